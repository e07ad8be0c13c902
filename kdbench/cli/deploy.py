"""`kdbench denoise` and `kdbench export`: use a benchmarked student outside the benchmark.

These commands are registered on the main group by `kdbench.cli`, whose error reporting
covers them. Both only read the results store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from kdbench.cli.errors import err_console
from kdbench.errors import KdbenchError

DEFAULT_RESULTS = "kdbench-results/results.db"

console = Console()


def _student_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How a student is chosen: by trial id, or the best of a pair and method."""
    options = [
        click.option("--trial", help="student trial id (a unique prefix is enough)"),
        click.option("--best", is_flag=True, help="use the best done student of --pair/--method"),
        click.option("--pair", help="architecture pair, with --best"),
        click.option("--method", help="KD method, with --best"),
        click.option(
            "--metric", default="si_sdr", show_default=True, help="ranking metric, with --best"
        ),
        click.option("--dataset", help="dataset name, with --best, when a store holds several"),
        click.option(
            "--results",
            default=DEFAULT_RESULTS,
            show_default=True,
            type=click.Path(dir_okay=False),
            help="results store (SQLite); checkpoints are in its students/ folder",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load(
    trial: str | None, best: bool, pair: str | None, method: str | None, metric: str,
    dataset: str | None, results: str, device: str = "cpu",
):
    from kdbench.api import resolve_device
    from kdbench.deploy import denoise as deploy

    where = resolve_device(device, key="--device")
    from kdbench.run.store import Store

    if (trial is None) == (not best):
        raise KdbenchError("choose the student with exactly one of --trial ID or --best")
    if best and (pair is None or method is None):
        raise KdbenchError("--best needs --pair and --method")
    store = Store(results, read_only=True)
    try:
        if trial:
            ref = deploy.find_trial(store, trial)
        else:
            ref = deploy.best(store, pair, method, metric, dataset)
    finally:
        store.close()
    err_console.print(
        f"student {ref.trial_id[:12]} ({ref.pair}/{ref.method}/seed {ref.seed}) "
        f"from {ref.checkpoint}",
        markup=False,
    )
    return deploy.load_student(ref.checkpoint, ref, where)


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("target", type=click.Path(path_type=Path))
@_student_options
@click.option(
    "--subtype", type=click.Choice(["pcm16", "float"]), default="pcm16", show_default=True
)
@click.option(
    "--device", default="auto", show_default=True,
    help="where the student runs: auto (the first CUDA device, else cpu), cpu, cuda, cuda:N",
)
def denoise(
    source, target, trial, best, pair, method, metric, dataset, results, subtype, device
) -> None:
    """Denoise SOURCE (a file, or a folder of .wav files) into TARGET with a student.

    Any rate and channel count is read; the output is mono at the input's rate.
    """
    from kdbench.deploy import denoise as deploy

    student = _load(trial, best, pair, method, metric, dataset, results, device)
    if source.is_dir():
        written = deploy.denoise_folder(student, source, target, subtype)
        console.print(
            f"denoised {len(written)} file(s), {deploy.seconds_of(written):.1f} s, into {target}",
            markup=False,
        )
    else:
        written = deploy.denoise_file(student, source, target, subtype)
        console.print(f"wrote {written}", markup=False)


@click.command()
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@_student_options
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
def export(target, trial, best, pair, method, metric, dataset, results, fmt) -> None:
    """Export a student's network on STFT frames to TARGET (ONNX), verified against
    PyTorch, with a JSON sidecar describing the STFT around it and the streaming latency.

    The student is loaded on the CPU: the graph is traced and checked against ONNX
    Runtime's CPU provider there, whatever GPUs the machine has."""
    from kdbench.deploy.onnx import export_onnx, sidecar_path

    student = _load(trial, best, pair, method, metric, dataset, results)
    sidecar = export_onnx(
        student.model,
        target,
        student.sample_rate,
        spec=student.spec,
        trial_id=student.trial_id,
        checkpoint=student.checkpoint,
    )
    parity, stream = sidecar["parity"], sidecar["streaming"]
    console.print(f"wrote {target} and {sidecar_path(target)}", markup=False)
    console.print(
        f"ONNX Runtime vs PyTorch: estimate max abs error "
        f"{parity['estimate_max_abs_error']:.2e}, "
        f"waveform {parity['waveform_max_abs_error']:.2e} (tolerance {parity['tolerance']:g})"
    )
    console.print(
        f"exact streaming: lookahead {stream['exact_lookahead_frames']} frames, blocks of "
        f"{stream['block_frames']}, algorithmic latency {stream['latency_ms']:.1f} ms"
    )
