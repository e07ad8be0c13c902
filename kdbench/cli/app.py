"""The `kdbench` command line."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kdbench import __version__
from kdbench.cli.errors import EXIT_STATUS_HELP, EXIT_TRIALS_FAILED, ReportingGroup, err_console
from kdbench.config import RUN_PARAMS, load_config
from kdbench.errors import ConfigError, KdbenchError
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import KINDS, get_registry

if TYPE_CHECKING:
    from kdbench.run.grid import DataUse

console = Console()


def grid_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that select a grid, shared by run, status and leaderboard."""
    options = [
        click.option("--preset", default="quick", show_default=True, help="preset name or .toml path"),
        click.option("--method", "methods", help="KD method(s): a name, a comma list, or `all`"),
        click.option("--pairs", help="architecture pair(s): a name, a comma list, or `all`"),
        click.option("--seeds", help="comma list of seeds (default: the preset's)"),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a setting"),
        click.option("--results", type=click.Path(dir_okay=False), help="results store (SQLite)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _parse_seeds(seeds: str | None) -> list[int] | None:
    """--seeds is checked as `run.seeds` is: the same type and range."""
    if seeds is None:
        return None
    try:
        return RUN_PARAMS["seeds"].coerce(f"--seeds {seeds!r}", seeds)
    except ConfigError as error:
        raise KdbenchError(f"{error} (a comma list of non-negative integers)") from None


def _prepare(
    preset: str, methods: str | None, pairs: str | None, seeds: str | None,
    overrides: tuple[str, ...], results: str | None, extra: list[str] | None = None,
    read_only: bool = True, data: DataUse = "identify",
):
    """The config, grid and store of a command; the store is opened before the datasets
    are prepared, so a wrong --results is reported at once. A command that only reads
    results finds its trials by the datasets' identities (`data="identify"`), so it builds
    no corpus in a fresh cache."""
    from kdbench.run.grid import build_grid
    from kdbench.run.store import Store

    registry = get_registry()
    config = load_config(preset, [*overrides, *(extra or [])], registry)
    store = Store(Path(results or config.run["results"]), read_only=read_only)
    grid = build_grid(
        config, registry, cache_root(create=data == "prepare"), store.path.parent,
        methods=methods, pairs=pairs, seeds=_parse_seeds(seeds), data=data,
    )
    return config, grid, store


@click.group(cls=ReportingGroup, epilog=EXIT_STATUS_HELP)
@click.version_option(__version__, prog_name="kdbench")
def main() -> None:
    """Benchmark knowledge distillation for speech denoising: methods × pairs × seeds.

    Commands that only read the results store (leaderboard, status, denoise, export) never
    create, change or migrate it.
    """


@main.command(epilog=EXIT_STATUS_HELP)
@grid_options
@click.option("--jobs", type=int, help="trials at once (default: the preset's run.jobs)")
@click.option("--executor", "executor_name", help="executor plugin (default: the preset's)")
@click.option("--retry-failed", is_flag=True, help="run failed trials again")
@click.option(
    "--address", help="Ray cluster to join (ray://host:port or auto); implies --executor ray"
)
@click.option("--dry-run", is_flag=True, help="print the trials and a compute estimate; run nothing")
@click.option(
    "--assume-tflops", type=float, default=4.0, show_default=True,
    help="effective throughput for --dry-run's hours (small UNets reach a fraction of peak)",
)
def run(
    preset, methods, pairs, seeds, overrides, results, jobs, executor_name, retry_failed, address,
    dry_run, assume_tflops,
) -> None:
    """Run the grid (skipping finished trials) and print the leaderboard.

    The exit status is 1 when any trial of the grid is failed after the run, including
    failures of earlier runs that were skipped (see --retry-failed).
    """
    if dry_run:
        _dry_run(preset, methods, pairs, seeds, overrides, assume_tflops)
        return
    from kdbench.report.leaderboard import collect, render_terminal
    from kdbench.run.runner import pending, run_grid

    extra = []
    if jobs is not None:
        extra.append(f"run.jobs={jobs}")
    if address is not None:
        if executor_name not in (None, "ray"):
            raise KdbenchError(
                f"--address joins a Ray cluster; it needs --executor ray, not {executor_name}"
            )
        executor_name = "ray"
        extra.append(f"executor.ray.address={address}")
    if executor_name is not None:
        extra.append(f"run.executor={executor_name}")
    config, grid, store = _prepare(
        preset, methods, pairs, seeds, overrides, results, extra, read_only=False, data="prepare"
    )
    registry = get_registry()
    executor = registry.get("executors", config.run["executor"])
    executor_params = config.plugin_params("executor", executor.name)
    executor.check(grid.trials, config.run["jobs"], executor_params)
    err_console.print(
        f"[bold]kdbench {__version__}[/bold] preset {preset}: {len(grid.students)} student "
        f"trial(s) = {len(grid.pairs)} pair(s) × {len(grid.methods)} method(s) "
        f"({', '.join(grid.methods)}) × {len(grid.seeds)} seed(s), plus "
        f"{len(grid.anchors)} anchor trial(s) (noisy input, teachers); store {escape(str(store.path))}"
    )
    report = run_grid(
        grid, store, executor, executor_params, config.run["jobs"], retry_failed, err_console
    )
    err_console.print(
        f"ran {report.ran} trial(s) in {report.seconds:.0f} s, skipped {report.skipped}, "
        f"failed {len(report.failed)}, not applicable {len(report.not_applicable)}"
    )
    render_terminal(collect(grid, store, config), console)
    unfinished = len(pending(grid.trials, store, retry_failed=True))
    if unfinished:
        err_console.print(
            f"{unfinished} trial(s) of the grid failed (in this run or an earlier one): "
            "`kdbench status` shows why, --retry-failed runs them again"
        )
        raise SystemExit(EXIT_TRIALS_FAILED)


def _dry_run(preset, methods, pairs, seeds, overrides, assume_tflops: float) -> None:
    """The grid's trials per cell and its compute, without touching data or the store."""
    from collections import Counter

    from kdbench.run.estimate import estimate
    from kdbench.run.grid import build_grid

    registry = get_registry()
    config = load_config(preset, overrides, registry)
    grid = build_grid(
        config, registry, cache_root(create=False), Path(config.run["results"]).parent,
        methods=methods, pairs=pairs, seeds=_parse_seeds(seeds), data="skip",
    )
    table = Table(title=f"dry run: preset {preset}")
    for column in ("dataset", "pair", "method", "seeds", "steps"):
        table.add_column(column)
    cells = Counter((t.dataset, t.pair, t.method) for t in grid.students)
    for (dataset, pair, method), count in cells.items():
        table.add_row(dataset, pair, method, str(count), str(config.train["steps"]))
    console.print(table)
    cost = estimate(grid, registry)
    console.print(
        f"{cost.students} student trial(s), {cost.teachers} teacher(s), "
        f"{len(grid.anchors)} anchor trial(s) (noisy input, teachers)\n"
        f"compute: {cost.total_flops / 1e15:.1f} PFLOP (teachers {cost.teacher_flops / 1e15:.1f}, "
        f"students {cost.student_flops / 1e15:.1f}) ≈ {cost.hours(assume_tflops):.1f} GPU-hours "
        f"at an assumed effective {assume_tflops:g} TFLOP/s"
    )


def _command_line(ctx: click.Context) -> str:
    """The command as given, rebuilt from the options the user set.

    Rebuilt rather than read from sys.argv so that it is right however the command was
    invoked (console script, `python -m`, a test runner); defaults are left out.
    """
    words = ["kdbench", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            words.append(flag)
        else:
            for item in value if param.multiple else [value]:
                words += [flag, str(item)]
    return shlex.join(words)


@main.command()
@grid_options
@click.option(
    "--format", "fmt", type=click.Choice(["terminal", "md", "csv", "latex", "html", "json"]),
    default="terminal", show_default=True, help="output format, printed to stdout",
)
@click.option("--dataset", "only_datasets", multiple=True, help="show only these dataset(s)")
@click.option("--pair", "only_pairs", multiple=True, help="show only these pair(s)")
@click.option("--metric", "only_metrics", multiple=True, help="show only these metric(s)")
@click.option("--only-method", "only_methods", multiple=True, help="show only these method(s)")
@click.option(
    "--publish", type=click.Path(file_okay=False), metavar="DIR",
    help="write DIR/<dataset>-<preset>/ (README.md, CSV, LaTeX, plots, trial export, site/)",
)
@click.option(
    "--audio-pair", metavar="PAIR",
    help="with --publish: the pair whose students the site plays (default: the first shown)",
)
@click.option(
    "--claims", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
    help="with --publish: a Markdown file of claims shown in the site",
)
@click.option(
    "--from-export", "from_export", type=click.Path(file_okay=False, exists=True),
    metavar="DIR",
    help="read a published page's export (trials.csv, results.csv, across_pairs.csv) "
    "instead of the store's scores; the store still supplies checkpoints for audio",
)
@click.pass_context
def leaderboard(
    ctx, preset, methods, pairs, seeds, overrides, results, fmt,
    only_datasets, only_pairs, only_metrics, only_methods, publish, audio_pair, claims,
    from_export,
) -> None:
    """Print the leaderboard of a grid from the results store (nothing is trained).

    Filters (repeatable or comma lists) only hide rows: p-values keep the Holm correction
    of the whole grid.
    """
    from kdbench.report.leaderboard import collect, render_terminal, select

    # A page and an export's tables need the test splits' audio and sizes; a table does not.
    data = "prepare" if publish or from_export else "identify"
    config, grid, store = _prepare(preset, methods, pairs, seeds, overrides, results, data=data)
    if from_export:
        from kdbench.report.export import read_export

        everything = read_export(Path(from_export), grid, config)
    else:
        everything = collect(grid, store, config)
    data = select(
        everything,
        datasets=only_datasets, pairs=only_pairs, metrics=only_metrics, methods=only_methods,
    )
    if publish:
        from kdbench.report.publish import publish as write_pages

        source = None if not from_export else (
            f"re-rendered from the export in `{from_export}` (trials.csv, results.csv, "
            "across_pairs.csv), not from per-utterance scores: the per-pair tests are "
            "carried over from results.csv; the across-pairs test, the confidence intervals "
            "and the ranks are recomputed from the per-seed means in trials.csv (the "
            "across-pairs table was checked equal to the published one)"
        )
        pages = write_pages(data, Path(publish), _command_line(ctx), store, claims=claims,
                            audio_pair=audio_pair, source=source)
        for page in pages:
            err_console.print(f"wrote {page} and {page.parent / 'site' / 'index.html'}")
        return
    if audio_pair or claims:
        raise KdbenchError("--audio-pair and --claims go with --publish")
    if fmt == "terminal":
        render_terminal(data, console)
        return
    from kdbench.report.formats import render

    click.echo(render(data, fmt), nl=False)


@main.command()
@grid_options
def status(preset, methods, pairs, seeds, overrides, results) -> None:
    """Show where a grid stands: done, running, failed, pending per cell, and why trials
    failed (nothing is run)."""
    from kdbench.run.status import grid_status, render_status

    _, grid, store = _prepare(preset, methods, pairs, seeds, overrides, results)
    render_status(grid_status(grid, store), console)


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice([*KINDS, "plugins", "presets"]))
def list_command(kind: str | None) -> None:
    """What is registered: methods, pairs, models, metrics, datasets, executors, plugins."""
    from kdbench.config import preset_names

    registry = get_registry()
    if kind == "plugins":
        table = Table(title="plugins")
        for column in ("plugin", "distribution", "version", "hooks"):
            table.add_column(column)
        for info in registry.plugins():
            table.add_row(info.name, info.distribution, info.version, ", ".join(info.hooks))
        console.print(table)
        return
    if kind == "presets":
        for name in preset_names():
            console.print(name)
        return
    for each in [kind] if kind else KINDS:
        table = Table(title=each)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("parameters")
        table.add_column("plugin", style="dim")
        for name, entry in registry.all(each).items():
            params = getattr(entry.obj, "params", {}) or {}
            shown = ", ".join(f"{key}={param.default!r}" for key, param in params.items())
            table.add_row(name, entry.description, shown, entry.plugin)
        console.print(table)



def _add_subcommands() -> None:
    from kdbench.cli.data import data
    from kdbench.cli.deploy import denoise, export

    for command in (data, denoise, export):
        main.add_command(command)


_add_subcommands()
