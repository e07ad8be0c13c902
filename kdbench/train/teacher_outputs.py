"""The teacher's outputs per training crop: computed once per teacher, shared on disk.

The teacher is frozen and in eval mode, so its output on a crop depends on that crop only,
and crop starts lie on a grid, so a training split has a finite set of crops. Every KD
trial that shares a teacher (all methods, seeds and pairs of a grid) therefore needs the
same table of teacher outputs; computing it once, instead of a teacher forward pass per
crop and step in every trial, is what makes a KD step cost little more than a plain one.

Layout: ``<folder>/<crop>-<grid>/<output name>/<utterance index>.pt`` holds one output
(a latent, or ``magnitude``) for every crop start of one utterance. Files are written
atomically and mapped read-only (`torch.load(mmap=True)`), so however many worker
processes read a table, the operating system's page cache holds it once. A file is checked
when it is mapped — it loads, and holds one row of the expected shape and dtype per crop
start — and one that fails (torn, truncated, foreign) is set aside and computed again. The
check is of structure, not a checksum: a checksum would read the whole table in every
worker, and a full disk or a half-copied cache, the usual causes, leave files that fail
to load. A table fills
lazily: the first trial to draw a crop of an utterance computes that utterance's rows for
the outputs its KD loss reads, and nobody computes them again.

Each crop is run alone (a batch of one), so the values a student sees never depend on the
table's state or on what shared the batch: a trial gives the same numbers alone, first,
or after others. The teacher computes only the outputs being tabled
(`Denoiser.forward_to`), so a table of encoder latents costs no decoder. Outputs that are
one tensor under two names (the UNet's ``bottleneck`` is its deepest ``enc``) are stored
once. An output is tabled only while the whole table of
every tabled output fits `KDBENCH_TEACHER_CACHE_MB` of disk (default 8192); one that does
not fit is computed at every step, crop by crop, as if there were no table.

On a GPU the teacher runs there, the table stays on disk (and in host memory, mapped), and
each batch's rows are gathered on the host into pinned memory and copied to the device
without making the host wait. Values computed on a GPU differ in their last bits from a
CPU's, so the caller keeps one table per platform (see `kdbench.run.trial`): a trial's
numbers must never depend on which platform happened to fill the table first.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from kdbench.api import Denoiser, DenoiserOutput
from kdbench.errors import CorruptFile
from kdbench.files.cache import load_or_build, save_atomically, write_atomically
from kdbench.train.crops import CropSampler

BUDGET_ENV = "KDBENCH_TEACHER_CACHE_MB"
TABLE_BYTES_FILE = "table_bytes"
REPAIR_LOCK_FILE = "repair.lock"


def _budget_bytes() -> int:
    return int(float(os.environ.get(BUDGET_ENV, "8192")) * 2**20)


class TeacherOutputs:
    """The per-crop table of one teacher's outputs under `folder`; `None` keeps nothing."""

    def __init__(self, teacher: Denoiser, folder: Path | None, budget_bytes: int | None = None) -> None:
        self.teacher = teacher
        self.device = teacher.device
        self.folder = folder
        self.budget = _budget_bytes() if budget_bytes is None else budget_bytes
        self.tables: dict[tuple[Path, int], torch.Tensor] = {}
        self.tabled: dict[Path, bool] = {}
        self.stored_as: dict[str, str] = {}
        self.crop_bytes: dict[str, int] = {}
        self.row_like: dict[str, tuple[torch.Size, torch.dtype]] = {}
        self.computed = 0  # teacher forward passes run by this process
        self.from_table = 0  # crop rows served from the table

    def _forward(self, crop: torch.Tensor, names: frozenset[str]) -> dict[str, torch.Tensor]:
        """The teacher's outputs `names` on one crop, through `Denoiser.forward_to`, so a
        table of encoder latents costs no decoder."""
        with torch.no_grad():
            output = self.teacher.forward_to(crop[None], names)
        self.computed += 1
        return {name: tensor[0] for name, tensor in output.items()}

    def _learn_names(self, sampler: CropSampler) -> None:
        """Which names are one tensor (stored under the first name in sorted order), and
        each output's bytes per crop, from one forward pass on a silent crop."""
        with torch.no_grad():
            output = self.teacher(torch.zeros(1, sampler.crop, device=self.device)).named()
        first_of: dict[int, str] = {}
        for name in sorted(output):
            self.stored_as[name] = first_of.setdefault(id(output[name]), name)
            self.crop_bytes[name] = output[name].numel() * output[name].element_size()
            self.row_like[name] = (output[name].shape[1:], output[name].dtype)

    def _table_folder(self, sampler: CropSampler, name: str) -> Path | None:
        """Where the output's table lives, or None if it is not tabled (no folder, or it
        does not fit the budget beside the outputs already tabled)."""
        if self.folder is None:
            return None
        folder = self.folder / f"{sampler.crop}-{sampler.grid}" / name
        if folder not in self.tabled:
            marker = folder / TABLE_BYTES_FILE
            needed = self.crop_bytes[name] * sampler.crop_count()
            others = sum(
                int(path.read_text())
                for path in folder.parent.glob(f"*/{TABLE_BYTES_FILE}")
                if path != marker
            )
            fits = marker.exists() or others + needed <= self.budget
            if fits and not marker.exists():
                folder.mkdir(parents=True, exist_ok=True)
                write_atomically(marker, lambda stream: stream.write(str(needed).encode()))
            self.tabled[folder] = fits
        return folder if self.tabled[folder] else None

    def _fill(self, sampler: CropSampler, index: int, folders: dict[str, Path]) -> None:
        """Compute one utterance's rows of the given outputs and publish them on disk."""
        names = frozenset(folders)
        crops = (sampler.crop_at(index, start) for start in sampler.starts(index))
        rows = [self._forward(crop, names) for crop in crops]
        for name, folder in folders.items():
            save_atomically(torch.stack([row[name] for row in rows]).cpu(), folder / f"{index}.pt")

    def _load_table(self, path: Path, name: str, rows: int) -> torch.Tensor:
        """The mapped table file, or `CorruptFile` if it is not one row of output `name`'s
        shape and dtype per crop start."""
        try:
            table = torch.load(path, mmap=True, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise CorruptFile(f"{path}: unreadable teacher-output table: {exc}") from exc
        shape, dtype = self.row_like[name]
        expected = ((rows, *shape), dtype)
        found = (tuple(table.shape), table.dtype) if isinstance(table, torch.Tensor) else table
        if found != expected:
            raise CorruptFile(
                f"{path}: teacher-output table holds {found!r:.200}, expected {expected}"
            )
        return table

    def _rows(self, sampler: CropSampler, index: int, folders: dict[str, Path]) -> dict[str, torch.Tensor]:
        missing = {
            name: folder for name, folder in folders.items()
            if (folder, index) not in self.tables and not (folder / f"{index}.pt").exists()
        }
        if missing:
            self._fill(sampler, index, missing)
        rows = len(sampler.starts(index))
        for name, folder in folders.items():
            if (folder, index) not in self.tables:
                self.tables[folder, index] = load_or_build(
                    folder / f"{index}.pt",
                    functools.partial(self._load_table, name=name, rows=rows),
                    functools.partial(self._fill, sampler, index, {name: folder}),
                    folder / REPAIR_LOCK_FILE,
                )
        return {name: self.tables[folder, index] for name, folder in folders.items()}

    def outputs(
        self, sampler: CropSampler, keys: Sequence[tuple[int, int]], reads: frozenset[str]
    ) -> DenoiserOutput:
        """The teacher's output on a batch of the sampler's crops, holding only `reads`."""
        if not self.stored_as:
            self._learn_names(sampler)
        stored = {self.stored_as[name] for name in reads}
        located = {name: self._table_folder(sampler, name) for name in stored}
        tabled = {name: folder for name, folder in located.items() if folder is not None}
        live = stored - tabled.keys()
        rows = []
        for index, start in keys:
            tables = self._rows(sampler, index, tabled) if tabled else {}
            row = {name: table[start // sampler.grid] for name, table in tables.items()}
            self.from_table += bool(tabled)
            if live:
                row.update(self._forward(sampler.crop_at(index, start), frozenset(live)))
            rows.append(row)
        stacked = {name: self._stack([row[self.stored_as[name]] for row in rows]) for name in reads}
        return DenoiserOutput(
            magnitude=stacked.pop("magnitude", torch.empty(0, device=self.device)),
            latents=stacked,
            length=sampler.crop,
            analysis=self.teacher.analysis,
        )


    def _stack(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """One output's rows as a batch on the teacher's device. Rows of one output all
        come from the table (host) or all from a live forward pass (device)."""
        if rows[0].device == self.device:
            return torch.stack(rows)
        pinned = torch.empty((len(rows), *rows[0].shape), dtype=rows[0].dtype, pin_memory=True)
        return torch.stack(rows, out=pinned).to(self.device, non_blocking=True)


_per_process: dict[Path, TeacherOutputs] = {}


def shared_teacher_outputs(folder: Path, teacher: Denoiser) -> TeacherOutputs:
    """One reader per teacher table and worker process, so its trials share the mapped files."""
    if folder not in _per_process:
        _per_process[folder] = TeacherOutputs(teacher, folder)
    return _per_process[folder]
