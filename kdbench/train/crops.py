"""Seeded random training crops: the same seed gives every method the same data order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kdbench.api import Utterance


class CropSampler:
    """Draws batches of aligned (noisy, clean) crops of fixed length from a split.

    The audio is held once as tensors; a batch is indices and offsets from the sampler's own
    generator, so nothing else that consumes randomness (adapter init, dropout) can shift
    the data order between methods that share a seed.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        crop_samples: int,
        batch_size: int,
        seed: int,
        grid_samples: int = 1,
    ) -> None:
        if not utterances:
            raise ValueError("the training split is empty")
        self.clean = [torch.from_numpy(np.asarray(u.clean, dtype=np.float32)) for u in utterances]
        self.noisy = [torch.from_numpy(np.asarray(u.noisy, dtype=np.float32)) for u in utterances]
        self.crop = crop_samples
        self.batch_size = batch_size
        self.grid = max(1, grid_samples)
        self.rng = np.random.default_rng(seed)

    def starts(self, index: int) -> range:
        """Every crop start of an utterance: the grid points a crop fits from, or just 0
        for an utterance no longer than a crop (padded instead)."""
        length = self.noisy[index].shape[-1]
        if length <= self.crop:
            return range(1)
        return range(0, (length - self.crop) // self.grid * self.grid + 1, self.grid)

    def crop_count(self) -> int:
        """How many distinct crops the split holds, i.e. how many the sampler can draw."""
        return sum(len(self.starts(index)) for index in range(len(self.noisy)))

    def crop_at(self, index: int, start: int) -> torch.Tensor:
        """The noisy crop a batch holds for key (index, start)."""
        return self._cut(self.noisy[index], start)

    def _cut(self, signal: torch.Tensor, start: int) -> torch.Tensor:
        if signal.shape[-1] <= self.crop:
            return torch.nn.functional.pad(signal, (0, self.crop - signal.shape[-1]))
        return signal[start : start + self.crop]

    def _crop(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        start = 0
        if self.noisy[index].shape[-1] > self.crop:  # a padded short utterance draws nothing
            starts = self.starts(index)
            start = starts[int(self.rng.integers(0, len(starts)))]
        return self._cut(self.noisy[index], start), self._cut(self.clean[index], start), (index, start)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Noisy and clean crops, and each crop's (utterance index, start) key.

        Starts lie on a grid of `grid_samples`, so the same crop recurs across steps,
        seeds and methods and anything computed from it alone (the teacher's output) can be
        kept instead of recomputed.
        """
        indices = self.rng.integers(0, len(self.clean), size=self.batch_size)
        noisy, clean, keys = zip(*(self._crop(int(i)) for i in indices))
        return torch.stack(noisy), torch.stack(clean), list(keys)


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
