"""Scale-invariant SDR and plain SNR, in dB.

SI-SDR (Le Roux et al. 2019) ignores the estimate's gain, so a denoiser is not punished
for a level change; SNR does not, and shows it when it matters.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from kdbench_plugins.metrics._signal import checked_pair

from kdbench.api import Metric, MetricUndefined, hookimpl


def _ratio_db(target_energy: float, residual_energy: float, what: str) -> float:
    """10·log10 of the ratio; a zero residual is undefined rather than +inf, so it cannot
    turn a mean over utterances into inf."""
    if residual_energy == 0.0:
        raise MetricUndefined(f"{what}: estimate equals the reference exactly (+inf dB)")
    return float(10.0 * np.log10(target_energy / residual_energy))


def si_sdr(clean: np.ndarray, estimate: np.ndarray) -> float:
    """SI-SDR with both signals made zero-mean first, so a DC offset counts as neither
    target nor distortion."""
    clean, estimate = checked_pair(clean, estimate)
    clean = clean - clean.mean()
    estimate = estimate - estimate.mean()
    reference_energy = float(np.dot(clean, clean))
    if reference_energy == 0.0:
        raise MetricUndefined("SI-SDR: reference is constant (silent once zero-mean)")
    gain = float(np.dot(estimate, clean)) / reference_energy
    if gain == 0.0:
        raise MetricUndefined("SI-SDR: estimate is silent or orthogonal to the reference (-inf dB)")
    target = gain * clean
    residual = estimate - target
    return _ratio_db(float(np.dot(target, target)), float(np.dot(residual, residual)), "SI-SDR")


def snr(clean: np.ndarray, estimate: np.ndarray) -> float:
    """Energy of the reference over the energy of estimate − reference."""
    clean, estimate = checked_pair(clean, estimate)
    residual = estimate - clean
    return _ratio_db(float(np.dot(clean, clean)), float(np.dot(residual, residual)), "SNR")


class ScaleInvariantSdr(Metric):
    name: ClassVar[str] = "si_sdr"
    description: ClassVar[str] = "Scale-invariant signal-to-distortion ratio (zero-mean)"
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = "dB"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return si_sdr(clean, estimate)

    def provenance(self) -> dict[str, str]:
        return {"implementation": "kdbench numpy", "zero_mean": "true", "eps": "none"}


class SignalToNoiseRatio(Metric):
    name: ClassVar[str] = "snr"
    description: ClassVar[str] = "Signal-to-noise ratio of the estimate against the clean reference"
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = "dB"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return snr(clean, estimate)

    def provenance(self) -> dict[str, str]:
        return {"implementation": "kdbench numpy", "zero_mean": "false", "eps": "none"}


@hookimpl
def kdbench_register_metrics(register) -> None:
    register.add(ScaleInvariantSdr())
    register.add(SignalToNoiseRatio())
