"""Composite quality measures CSIG, CBAK and COVL (Hu & Loizou, IEEE TASLP 16(1), 2008).

Each is a linear regression, fitted to listening tests, on four objective measures:
the log-likelihood ratio (LLR) of LPC envelopes, Klatt's weighted spectral slope (WSS),
segmental SNR and PESQ. Framing and trimming follow Loizou's reference MATLAB code
("Speech Enhancement: Theory and Practice"), since the published coefficients were fitted
with it: 30 ms Hann frames with 75 % overlap, the last full frame dropped, LLR and WSS
averaged over their lowest 95 % of frames, segmental SNR clipped to [-10, 35] dB per frame.

PESQ enters as wide-band MOS-LQO at 16 kHz, the convention of the speech-enhancement
literature on VoiceBank-DEMAND; Hu & Loizou fitted on narrow-band raw PESQ at 8 kHz, so
absolute values are comparable with those papers, not with the 2008 article.

The three metrics share one `CompositeMemo`, so scoring an utterance on all of them runs
PESQ and the frame analyses once.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Any, ClassVar

import numpy as np
from kdbench_plugins.metrics._signal import checked_pair
from kdbench_plugins.metrics.pesq_metrics import pesq_score
from numpy.lib.stride_tricks import sliding_window_view

from kdbench.api import Metric, MetricUndefined, hookimpl, version_of

TRIM = 0.95
SEGSNR_LIMITS_DB = (-10.0, 35.0)

# Klatt's 25 critical bands as used by Loizou: centre frequencies and bandwidths in Hz.
_BAND_CENTRES = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
    904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63,
])
_BAND_WIDTHS = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255,
    276.072, 298.126, 321.465, 346.136,
])
_WSS_KMAX = 20.0  # Klatt's global-maximum weight constant (dB)
_WSS_KLOCMAX = 1.0  # Klatt's local-maximum weight constant (dB)


@dataclasses.dataclass(frozen=True)
class Measures:
    """The four inputs of the composite regressions for one utterance."""

    llr: float
    wss: float
    segsnr: float
    pesq: float

    def csig(self) -> float:
        return _clip(3.093 - 1.029 * self.llr + 0.603 * self.pesq - 0.009 * self.wss)

    def cbak(self) -> float:
        return _clip(1.634 + 0.478 * self.pesq - 0.007 * self.wss + 0.063 * self.segsnr)

    def covl(self) -> float:
        return _clip(1.594 + 0.805 * self.pesq - 0.512 * self.llr - 0.007 * self.wss)


def _clip(value: float) -> float:
    """The regressions are fitted to a 1-5 opinion scale and are clipped to it."""
    return float(min(5.0, max(1.0, value)))


def _frames(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Hann-windowed 30 ms frames every 7.5 ms, as (frames, samples).

    The frame count floor((N - W) / hop) is Loizou's: it leaves out the last full frame.
    """
    width = round(0.030 * sample_rate)
    hop = width // 4
    count = (signal.size - width) // hop
    if count < 1:
        raise MetricUndefined(f"composite: clip shorter than one {width}-sample frame")
    window = 0.5 * (1.0 - np.cos(2 * np.pi * np.arange(1, width + 1) / (width + 1)))
    return sliding_window_view(signal, width)[: count * hop : hop] * window


def _trimmed_mean(values: np.ndarray) -> float:
    """Mean of the lowest 95 %, so a few outlier frames (clicks, onsets) do not dominate."""
    keep = max(1, int(np.floor(values.size * TRIM + 0.5)))
    return float(np.mean(np.sort(values)[:keep]))


def _autocorrelation(frames: np.ndarray, order: int) -> np.ndarray:
    width = frames.shape[1]
    return np.stack(
        [np.sum(frames[:, : width - lag] * frames[:, lag:], axis=1) for lag in range(order + 1)],
        axis=1,
    )


def _lpc(autocorr: np.ndarray) -> np.ndarray:
    """Prediction-error filters [1, a1, ..., aP] of every frame at once (Levinson-Durbin).

    Rows must have a positive zero-lag term.
    """
    frames, order = autocorr.shape[0], autocorr.shape[1] - 1
    coeffs = np.zeros((frames, order + 1))
    coeffs[:, 0] = 1.0
    error = autocorr[:, 0].copy()
    for i in range(1, order + 1):
        acc = autocorr[:, i] + np.sum(coeffs[:, 1:i] * autocorr[:, i - 1 : 0 : -1], axis=1)
        reflection = -acc / error
        coeffs[:, 1:i] = coeffs[:, 1:i] + reflection[:, None] * coeffs[:, i - 1 : 0 : -1]
        coeffs[:, i] = reflection
        error = error * (1.0 - reflection**2)
    return coeffs


def llr(clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Trimmed mean over frames of log(a_e R_c a_eᵀ / a_c R_c a_cᵀ), R_c the clean frame's
    autocorrelation matrix: how much worse the estimate's LPC envelope predicts the clean frame.

    Frames where the reference is silent have no envelope and are skipped; frames where only
    the estimate is silent count as infinitely distorted.
    """
    order = 10 if sample_rate < 10000 else 16
    r_clean = _autocorrelation(_frames(clean, sample_rate), order)
    r_est = _autocorrelation(_frames(estimate, sample_rate), order)
    voiced = r_clean[:, 0] > 0
    if not np.any(voiced):
        raise MetricUndefined("LLR: every frame of the reference is silent")
    r_clean, r_est = r_clean[voiced], r_est[voiced]
    est_silent = r_est[:, 0] <= 0
    r_est[est_silent] = np.eye(1, order + 1)  # placeholder row, overridden below
    a_clean, a_est = _lpc(r_clean), _lpc(r_est)
    lags = np.abs(np.subtract.outer(np.arange(order + 1), np.arange(order + 1)))
    toeplitz = r_clean[:, lags]
    numerator = np.einsum("fi,fij,fj->f", a_est, toeplitz, a_est)
    denominator = np.einsum("fi,fij,fj->f", a_clean, toeplitz, a_clean)
    with np.errstate(divide="ignore", invalid="ignore"):
        distortion = np.log(numerator / denominator)
    distortion[est_silent | ~np.isfinite(distortion)] = np.inf
    return _trimmed_mean(distortion)


def _critical_band_filters(sample_rate: int, half_fft: int) -> np.ndarray:
    """Gaussian-shaped (in dB) critical-band weights over FFT bins, cut at -30 dB."""
    nyquist = sample_rate / 2
    bins = np.arange(half_fft)
    centres = np.floor(_BAND_CENTRES / nyquist * half_fft)
    widths = _BAND_WIDTHS / nyquist * half_fft
    gains = np.log(_BAND_WIDTHS[0]) - np.log(_BAND_WIDTHS)
    filters = np.exp(-11.0 * ((bins[None, :] - centres[:, None]) / widths[:, None]) ** 2
                     + gains[:, None])
    return filters * (filters > np.exp(-30.0 / (2.0 * 2.303)))


def _band_energies_db(frames: np.ndarray, filters: np.ndarray, n_fft: int) -> np.ndarray:
    power = np.abs(np.fft.rfft(frames, n_fft, axis=1)[:, : n_fft // 2]) ** 2
    return 10.0 * np.log10(np.maximum(power @ filters.T, 1e-10))


def _nearest_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Per band, the level of the spectral peak it belongs to, with the search rule of
    Loizou's code (an upward search stops one band short of the peak), since the
    regression weights were fitted with that rule."""
    bands = slope.shape[1]
    rising = slope > 0
    next_fall = np.full(slope.shape, bands)
    last_rise = np.full(slope.shape, -1)
    for band in range(bands - 1, -1, -1):
        after = next_fall[:, band + 1] if band + 1 < bands else bands
        next_fall[:, band] = np.where(rising[:, band], after, band)
    for band in range(bands):
        before = last_rise[:, band - 1] if band > 0 else -1
        last_rise[:, band] = np.where(rising[:, band], band, before)
    index = np.where(rising, next_fall - 1, last_rise + 1)
    return np.take_along_axis(energy, index, axis=1)


def wss(clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Klatt's weighted spectral slope distance, trimmed mean over frames: differences of
    critical-band spectral slopes, weighted toward spectral peaks where hearing is most
    sensitive to them."""
    clean_frames = _frames(clean, sample_rate)
    n_fft = 1 << int(np.ceil(np.log2(2 * clean_frames.shape[1])))
    filters = _critical_band_filters(sample_rate, n_fft // 2)
    distortion_terms = []
    weights = []
    for frames in (clean_frames, _frames(estimate, sample_rate)):
        energy = _band_energies_db(frames, filters, n_fft)
        slope = np.diff(energy, axis=1)
        level = energy[:, :-1]
        global_weight = _WSS_KMAX / (_WSS_KMAX + energy.max(axis=1, keepdims=True) - level)
        local_weight = _WSS_KLOCMAX / (_WSS_KLOCMAX + _nearest_peaks(energy, slope) - level)
        weights.append(global_weight * local_weight)
        distortion_terms.append(slope)
    weight = (weights[0] + weights[1]) / 2.0
    distortion = np.sum(weight * (distortion_terms[0] - distortion_terms[1]) ** 2, axis=1)
    return _trimmed_mean(distortion / np.sum(weight, axis=1))


def segmental_snr(clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Mean over all frames of the per-frame SNR clipped to [-10, 35] dB, so silent frames
    and near-perfect frames do not swamp the average."""
    clean_frames = _frames(clean, sample_rate)
    residual = clean_frames - _frames(estimate, sample_rate)
    eps = np.finfo(np.float64).eps
    ratio = np.sum(clean_frames**2, axis=1) / (np.sum(residual**2, axis=1) + eps)
    return float(np.mean(np.clip(10.0 * np.log10(ratio + eps), *SEGSNR_LIMITS_DB)))


def measures(clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> Measures:
    """All four regression inputs for one utterance, uncached."""
    pesq_value = pesq_score(clean, estimate, sample_rate, "wb")
    clean, estimate = checked_pair(clean, estimate)
    return Measures(
        llr=llr(clean, estimate, sample_rate),
        wss=wss(clean, estimate, sample_rate),
        segsnr=segmental_snr(clean, estimate, sample_rate),
        pesq=pesq_value,
    )


class CompositeMemo:
    """Remembers the measures of the last few utterances, keyed on the content of the
    signals (not their identity, which a caller may reuse), including the reason when an
    utterance cannot be scored.

    Not copied when pickled: each worker process starts with an empty memo, while metrics
    pickled together keep sharing one.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple[Any, ...], Measures | str] = (
            collections.OrderedDict()
        )

    def get(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> Measures:
        key = (sample_rate, _digest(clean), _digest(estimate))
        if key not in self._entries:
            try:
                self._entries[key] = measures(clean, estimate, sample_rate)
            except MetricUndefined as exc:
                self._entries[key] = str(exc)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        entry = self._entries[key]
        if isinstance(entry, str):
            raise MetricUndefined(entry)
        return entry

    def __getstate__(self) -> dict[str, Any]:
        return {"size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["size"])


def _digest(array: np.ndarray) -> tuple[str, tuple[int, ...], str]:
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()
    return array.dtype.str, array.shape, digest


class _Composite(Metric):
    higher_is_better: ClassVar[bool] = True
    range: ClassVar[tuple[float, float]] = (1.0, 5.0)
    unit: ClassVar[str] = "MOS"

    def __init__(self, memo: CompositeMemo | None = None) -> None:
        self.memo = memo if memo is not None else CompositeMemo()

    def provenance(self) -> dict[str, str]:
        return {
            "regression": "Hu & Loizou 2008",
            "pesq": version_of("pesq"),
            "pesq_input": "wb MOS-LQO at 16 kHz",
            "frames": "30 ms Hann, 75 % overlap, last full frame dropped",
            "llr_wss_trim": "lowest 95 % of frames",
            "segsnr_limits_db": "-10,35",
            "lpc_order": "10 below 10 kHz else 16",
        }


class Csig(_Composite):
    name: ClassVar[str] = "csig"
    description: ClassVar[str] = "Predicted signal-distortion rating, 1-5 (Hu & Loizou 2008)"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return self.memo.get(clean, estimate, sample_rate).csig()


class Cbak(_Composite):
    name: ClassVar[str] = "cbak"
    description: ClassVar[str] = "Predicted background-intrusiveness rating, 1-5 (Hu & Loizou 2008)"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return self.memo.get(clean, estimate, sample_rate).cbak()


class Covl(_Composite):
    name: ClassVar[str] = "covl"
    description: ClassVar[str] = "Predicted overall quality rating, 1-5 (Hu & Loizou 2008)"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return self.memo.get(clean, estimate, sample_rate).covl()


@hookimpl
def kdbench_register_metrics(register) -> None:
    memo = CompositeMemo()
    register.add(Csig(memo))
    register.add(Cbak(memo))
    register.add(Covl(memo))
