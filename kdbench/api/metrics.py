"""The metric contract: one number per utterance, or `MetricUndefined` with the reason."""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Metric:
    """A per-utterance quality measure of an estimate against the clean reference.

    `compute` raises `MetricUndefined` when the utterance cannot be scored; the evaluator
    stores NaN with the reason and goes on.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))
    unit: ClassVar[str] = ""

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        raise NotImplementedError

    def provenance(self) -> dict[str, str]:
        """Versions and settings that make this metric's numbers comparable to others'."""
        return {}
