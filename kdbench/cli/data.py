"""`kdbench data`: look at a dataset before trusting numbers computed on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from kdbench.api import PreparedDataset, write_audio
from kdbench.config import load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry

console = Console()

SNR_BINS = (-np.inf, -2.5, 2.5, 7.5, 12.5, 17.5, np.inf)
SNR_LABELS = ("< -2.5", "-2.5…2.5", "2.5…7.5", "7.5…12.5", "12.5…17.5", "≥ 17.5")


def prepare(name: str | None, preset: str, overrides: tuple[str, ...]) -> PreparedDataset:
    """The dataset as a run with the same preset and overrides would see it."""
    registry = get_registry()
    config = load_config(preset, overrides, registry)
    name = name or config.run["datasets"][0]
    plugin = registry.get("datasets", name)
    return plugin.prepare(config.plugin_params("dataset", name), cache_root())


def speaker(meta: dict) -> str | None:
    return meta.get("talker") or meta.get("speaker")


def split_table(dataset: PreparedDataset) -> Table:
    table = Table(title=f"{dataset.name} ({dataset.identity}) at {dataset.sample_rate} Hz")
    for column in ("split", "utterances", "hours", "talkers", "noises", *SNR_LABELS):
        table.add_column(column, justify="right")
    for split, utterances in dataset.splits.items():
        seconds = sum(len(u.clean) for u in utterances) / dataset.sample_rate
        talkers = {speaker(u.meta) for u in utterances} - {None}
        noises = Counter(u.meta.get("noise") for u in utterances if u.meta.get("noise"))
        snrs = [u.meta["snr_db"] for u in utterances if u.meta.get("snr_db") is not None]
        histogram = np.histogram(snrs, bins=SNR_BINS)[0] if snrs else [0] * len(SNR_LABELS)
        table.add_row(
            split,
            str(len(utterances)),
            f"{seconds / 3600:.3f}",
            str(len(talkers)) if talkers else "?",
            str(len(noises)) if noises else "?",
            *(str(count) for count in histogram),
        )
    return table


@click.group()
def data() -> None:
    """Inspect a dataset: counts, hours, SNRs, talkers; listen to examples."""


@data.command()
@click.argument("dataset", required=False)
@click.option("--preset", default="quick", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
def show(dataset: str | None, preset: str, overrides: tuple[str, ...]) -> None:
    """Counts, total hours, SNR histogram, talkers per split and the identity hash."""
    console.print(split_table(prepare(dataset, preset, overrides)))


@data.command()
@click.argument("dataset", required=False)
@click.option("--n", "count", default=3, show_default=True, help="examples per split")
@click.option("--split", default="test", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--preset", default="quick", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE")
def listen(dataset, count, split, out_dir, preset, overrides) -> None:
    """Write example clean/noisy pairs as wav files to listen to."""
    prepared = prepare(dataset, preset, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for utterance in list(prepared.splits[split])[:count]:
        stem = utterance.id.replace("/", "_")
        for kind in ("clean", "noisy"):
            path = out / f"{stem}_{kind}.wav"
            write_audio(path, np.asarray(getattr(utterance, kind)), prepared.sample_rate)
            console.print(str(path), markup=False)
