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

    def _crop(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        clean, noisy = self.clean[index], self.noisy[index]
        length = clean.shape[-1]
        if length <= self.crop:
            pad = self.crop - length
            return (
                torch.nn.functional.pad(noisy, (0, pad)),
                torch.nn.functional.pad(clean, (0, pad)),
                (index, 0),
            )
        start = int(self.rng.integers(0, (length - self.crop) // self.grid + 1)) * self.grid
        return noisy[start : start + self.crop], clean[start : start + self.crop], (index, start)

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
