"""STOI and extended STOI (Taal et al. 2011; Jensen & Taal 2016) through `pystoi`.

pystoi resamples to 10 kHz and drops frames more than 40 dB below the loudest. When
fewer than 30 frames (about 384 ms of speech) remain it only warns and returns 1e-5,
which would pass for a real score; that case is reported as undefined instead.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
from kdbench_plugins.metrics._signal import checked_pair
from pystoi import stoi as pystoi_stoi

from kdbench.api import Metric, MetricUndefined, hookimpl, version_of


def stoi_score(clean: np.ndarray, estimate: np.ndarray, sample_rate: int, extended: bool) -> float:
    """(E)STOI of `estimate` against `clean`; too little speech raises `MetricUndefined`."""
    clean, estimate = checked_pair(clean, estimate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(clean, estimate, sample_rate, extended=extended))
    if any("Not enough STFT frames" in str(warning.message) for warning in caught):
        raise MetricUndefined("STOI: under 30 frames (about 0.4 s) of speech after silence removal")
    if not np.isfinite(value):
        raise MetricUndefined(f"STOI: pystoi returned {value}")
    return value


class Stoi(Metric):
    name: ClassVar[str] = "stoi"
    description: ClassVar[str] = "Short-time objective intelligibility (pystoi, 10 kHz)"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    unit: ClassVar[str] = ""

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return stoi_score(clean, estimate, sample_rate, extended=False)

    def provenance(self) -> dict[str, str]:
        return {"pystoi": version_of("pystoi"), "extended": "false", "sample_rate": "10000"}


class ExtendedStoi(Metric):
    name: ClassVar[str] = "estoi"
    description: ClassVar[str] = "Extended STOI, robust to modulated noise (pystoi, 10 kHz)"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    unit: ClassVar[str] = ""

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return stoi_score(clean, estimate, sample_rate, extended=True)

    def provenance(self) -> dict[str, str]:
        return {"pystoi": version_of("pystoi"), "extended": "true", "sample_rate": "10000"}


@hookimpl
def kdbench_register_metrics(register) -> None:
    register.add(Stoi())
    register.add(ExtendedStoi())
