"""PESQ (ITU-T P.862) in wide band and narrow band, through the `pesq` package.

Both report MOS-LQO (P.862.2 mapping for wide band, P.862.1 for narrow band). The
mappings squeeze the raw P.862 range [-0.5, 4.5] into [1.04, 4.64] (wb) and
[1.02, 4.55] (nb): identical signals score 4.64 in wide band, not 4.5.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pesq
from kdbench_plugins.metrics._signal import checked_pair, resample

from kdbench.api import Metric, MetricUndefined, hookimpl, version_of

MIN_SECONDS = 0.25
"""P.862's shortest buffer; shorter clips make `pesq` raise `BufferTooShortError`."""


def pesq_score(clean: np.ndarray, estimate: np.ndarray, sample_rate: int, mode: str) -> float:
    """MOS-LQO of `estimate` against `clean`, with every way `pesq` can fail turned into
    `MetricUndefined`.

    Wide band runs at 16 kHz and narrow band at 8 kHz whatever the input rate, so a
    score does not depend on the dataset's rate.
    """
    clean, estimate = checked_pair(clean, estimate)
    if not np.any(estimate):
        # pesq 0.0.4 normalises by the peak and fails with a bare ValueError (NaN to int).
        raise MetricUndefined("PESQ: estimate is silent (all zeros)")
    if clean.size < MIN_SECONDS * sample_rate:
        raise MetricUndefined(
            f"PESQ: clip of {clean.size / sample_rate:.3f} s is shorter than {MIN_SECONDS} s"
        )
    rate = 16000 if mode == "wb" else 8000
    clean = resample(clean, sample_rate, rate)
    estimate = resample(estimate, sample_rate, rate)
    try:
        return float(pesq.pesq(rate, clean, estimate, mode))
    except pesq.NoUtterancesError as exc:
        raise MetricUndefined("PESQ: no speech activity found in the reference") from exc
    except pesq.PesqError as exc:
        raise MetricUndefined(f"PESQ: {type(exc).__name__}: {_text(exc)}") from exc
    except ValueError as exc:
        raise MetricUndefined(f"PESQ failed on this signal: {exc}") from exc


def _text(exc: Exception) -> str:
    """pesq's C layer gives its messages as bytes."""
    message = exc.args[0] if exc.args else ""
    return message.decode(errors="replace") if isinstance(message, bytes) else str(message)


class PesqWideBand(Metric):
    name: ClassVar[str] = "pesq_wb"
    description: ClassVar[str] = "PESQ wide band (P.862.2 MOS-LQO) at 16 kHz"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (1.04, 4.64)
    unit: ClassVar[str] = "MOS"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return pesq_score(clean, estimate, sample_rate, "wb")

    def provenance(self) -> dict[str, str]:
        return {
            "pesq": version_of("pesq"),
            "mode": "wb",
            "sample_rate": "16000",
            "scale": "P.862.2 MOS-LQO",
        }


class PesqNarrowBand(Metric):
    name: ClassVar[str] = "pesq_nb"
    description: ClassVar[str] = "PESQ narrow band (P.862.1 MOS-LQO) at 8 kHz"
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (1.02, 4.55)
    unit: ClassVar[str] = "MOS"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return pesq_score(clean, estimate, sample_rate, "nb")

    def provenance(self) -> dict[str, str]:
        return {
            "pesq": version_of("pesq"),
            "mode": "nb",
            "sample_rate": "8000",
            "scale": "P.862.1 MOS-LQO",
        }


@hookimpl
def kdbench_register_metrics(register) -> None:
    register.add(PesqWideBand())
    register.add(PesqNarrowBand())
