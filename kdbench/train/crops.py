"""Seeded random training crops: the same seed gives every method the same data order."""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
import torch

from kdbench.api import Utterance


class CropSampler:
    """Draws batches of aligned (noisy, clean) crops of fixed length from a split.

    The audio is held once, on the training device, as one tensor per signal with the
    utterances end to end (each padded with zeros to a crop at least, which is what a
    short utterance's one crop is). A batch is indices and offsets from the sampler's own
    generator, so nothing else that consumes randomness (adapter init, dropout) can shift
    the data order between methods that share a seed. The offsets of `PREFETCH_BATCHES`
    batches are drawn in one go (the generator's sequence is the same as batch by batch)
    and copied to the device at once, and each batch is a single gather there: on a GPU
    no step waits for the host.
    """

    PREFETCH_BATCHES = 64

    def __init__(
        self,
        utterances: Sequence[Utterance],
        crop_samples: int,
        batch_size: int,
        seed: int,
        grid_samples: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if not utterances:
            raise ValueError("the training split is empty")
        self.crop = crop_samples
        self.batch_size = batch_size
        self.grid = max(1, grid_samples)
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(device)
        self.lengths = [len(u.noisy) for u in utterances]
        room = [max(length, crop_samples) for length in self.lengths]
        self.offsets = np.concatenate([[0], np.cumsum(room[:-1])]).astype(np.int64)
        self.clean = self._end_to_end([u.clean for u in utterances], room)
        self.noisy = self._end_to_end([u.noisy for u in utterances], room)
        self.span = torch.arange(crop_samples, device=self.device)
        self.queued: collections.deque[tuple[torch.Tensor, list[tuple[int, int]]]] = (
            collections.deque()
        )

    def _end_to_end(self, signals: Sequence[np.ndarray], room: Sequence[int]) -> torch.Tensor:
        """One pass over the audio: each utterance copied once, only its padding zeroed."""
        flat = np.empty(sum(room), dtype=np.float32)
        for offset, signal, size in zip(self.offsets, signals, room):
            flat[offset : offset + len(signal)] = signal
            flat[offset + len(signal) : offset + size] = 0.0
        return torch.from_numpy(flat).to(self.device)

    def starts(self, index: int) -> range:
        """Every crop start of an utterance: the grid points a crop fits from, or just 0
        for an utterance no longer than a crop (padded instead)."""
        length = self.lengths[index]
        if length <= self.crop:
            return range(1)
        return range(0, (length - self.crop) // self.grid * self.grid + 1, self.grid)

    def crop_count(self) -> int:
        """How many distinct crops the split holds, i.e. how many the sampler can draw."""
        return sum(len(self.starts(index)) for index in range(len(self.lengths)))

    def crop_at(self, index: int, start: int) -> torch.Tensor:
        """The noisy crop a batch holds for key (index, start)."""
        at = int(self.offsets[index]) + start
        return self.noisy[at : at + self.crop]

    def _key(self, index: int) -> tuple[int, int]:
        start = 0
        if self.lengths[index] > self.crop:  # a padded short utterance draws nothing
            starts = self.starts(index)
            start = starts[int(self.rng.integers(0, len(starts)))]
        return index, start

    def _prefetch(self) -> None:
        keys = []
        for _ in range(self.PREFETCH_BATCHES):
            indices = self.rng.integers(0, len(self.lengths), size=self.batch_size)
            keys.append([self._key(int(i)) for i in indices])
        positions = torch.from_numpy(
            np.array([[self.offsets[i] + start for i, start in batch] for batch in keys])
        ).to(self.device)
        self.queued.extend(zip(positions, keys))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Noisy and clean crops, and each crop's (utterance index, start) key.

        Starts lie on a grid of `grid_samples`, so the same crop recurs across steps,
        seeds and methods and anything computed from it alone (the teacher's output) can be
        kept instead of recomputed.
        """
        if not self.queued:
            self._prefetch()
        positions, keys = self.queued.popleft()
        where = positions[:, None] + self.span
        return self.noisy[where], self.clean[where], keys


def full_batches(
    utterances: Sequence[Utterance], batch_size: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Whole utterances grouped by equal length, for validation losses on full clips."""
    by_length: dict[int, list[Utterance]] = {}
    for utterance in utterances:
        by_length.setdefault(len(utterance.clean), []).append(utterance)
    batches = []
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            batches.append(
                (
                    torch.from_numpy(np.stack([u.noisy for u in chunk]).astype(np.float32)),
                    torch.from_numpy(np.stack([u.clean for u in chunk]).astype(np.float32)),
                )
            )
    return batches
