"""Input checks and resampling shared by the metric plugins.

Every metric refuses the same bad inputs with the same reasons, so a NaN in the results
table reads the same whichever metric produced it.
"""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly

from kdbench.api import MetricUndefined


def checked_pair(clean: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both signals as 1-D float64, or `MetricUndefined` if either cannot be scored.

    A shape mismatch is a caller's bug, not an undefined score, so it raises `ValueError`.
    """
    clean = np.asarray(clean, dtype=np.float64).reshape(-1)
    estimate = np.asarray(estimate, dtype=np.float64).reshape(-1)
    if clean.shape != estimate.shape:
        raise ValueError(
            f"clean and estimate differ in length: {clean.size} vs {estimate.size} samples"
        )
    if not np.all(np.isfinite(clean)):
        raise MetricUndefined("reference contains NaN or infinite samples")
    if not np.all(np.isfinite(estimate)):
        raise MetricUndefined("estimate contains NaN or infinite samples")
    if not np.any(clean):
        raise MetricUndefined("reference is silent (all zeros)")
    return clean, estimate


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling; a no-op at equal rates so native-rate scores stay bit-exact."""
    if from_rate == to_rate:
        return signal
    divisor = gcd(from_rate, to_rate)
    return resample_poly(signal, to_rate // divisor, from_rate // divisor)
