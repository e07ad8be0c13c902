"""The metric plugins: known values, invariances, and undefined cases as NaN-with-reason."""

from __future__ import annotations

import pickle

import numpy as np
import pesq
import pytest
from kdbench_plugins.metrics import composite, pesq_metrics, sdr_metrics, stoi_metrics
from scipy.signal import butter, sosfilt
from signals import speech_like, white_noise_at_snr

from kdbench.api import Metric, MetricUndefined
from kdbench.plugin.registry import make_registry

RATE = 16000


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return speech_like(2.0, RATE, seed=0)


def all_metrics() -> list[Metric]:
    memo = composite.CompositeMemo()
    return [
        pesq_metrics.PesqWideBand(),
        pesq_metrics.PesqNarrowBand(),
        stoi_metrics.Stoi(),
        stoi_metrics.ExtendedStoi(),
        sdr_metrics.ScaleInvariantSdr(),
        sdr_metrics.SignalToNoiseRatio(),
        composite.Csig(memo),
        composite.Cbak(memo),
        composite.Covl(memo),
    ]


@pytest.mark.parametrize("metric", all_metrics(), ids=lambda m: m.name)
def test_metric_declares_itself(metric: Metric) -> None:
    assert metric.name and metric.description and "\n" not in metric.description
    low, high = metric.range
    assert low < high
    assert all(isinstance(v, str) for v in metric.provenance().values())
    assert type(pickle.loads(pickle.dumps(metric))) is type(metric)


def test_identical_signals_score_at_the_top(clean: np.ndarray) -> None:
    wide, narrow = pesq_metrics.PesqWideBand(), pesq_metrics.PesqNarrowBand()
    assert wide.compute(clean, clean, RATE) == pytest.approx(4.644, abs=0.01)
    assert narrow.compute(clean, clean, RATE) == pytest.approx(4.549, abs=0.01)
    assert stoi_metrics.Stoi().compute(clean, clean, RATE) == pytest.approx(1.0, abs=1e-6)
    assert stoi_metrics.ExtendedStoi().compute(clean, clean, RATE) == pytest.approx(1.0, abs=1e-6)


def test_quality_falls_with_noise(clean: np.ndarray) -> None:
    noisy = [white_noise_at_snr(clean, snr)[0] for snr in (0, 10, 20)]
    metrics = (pesq_metrics.PesqWideBand(), stoi_metrics.Stoi(), sdr_metrics.SignalToNoiseRatio())
    for metric in metrics:
        values = [metric.compute(clean, estimate, RATE) for estimate in noisy]
        assert values == sorted(values), metric.name


def test_si_sdr_ignores_positive_gain(clean: np.ndarray) -> None:
    noisy, _ = white_noise_at_snr(clean, 5.0)
    metric = sdr_metrics.ScaleInvariantSdr()
    assert metric.compute(clean, 3.7 * noisy, RATE) == pytest.approx(
        metric.compute(clean, noisy, RATE), abs=1e-9
    )


def test_si_sdr_and_snr_of_white_noise_at_0_db(clean: np.ndarray) -> None:
    noisy, _ = white_noise_at_snr(clean, 0.0)
    si_sdr = sdr_metrics.ScaleInvariantSdr().compute(clean, noisy, RATE)
    snr = sdr_metrics.SignalToNoiseRatio().compute(clean, noisy, RATE)
    assert si_sdr == pytest.approx(0.0, abs=0.5)
    assert snr == pytest.approx(0.0, abs=1e-9)


def test_si_sdr_is_zero_mean(clean: np.ndarray) -> None:
    noisy, _ = white_noise_at_snr(clean, 10.0)
    metric = sdr_metrics.ScaleInvariantSdr()
    assert metric.compute(clean + 0.3, noisy - 0.2, RATE) == pytest.approx(
        metric.compute(clean, noisy, RATE), abs=1e-9
    )


@pytest.mark.parametrize("metric", all_metrics(), ids=lambda m: m.name)
def test_silent_reference_is_undefined(metric: Metric, clean: np.ndarray) -> None:
    with pytest.raises(MetricUndefined, match="silent"):
        metric.compute(np.zeros_like(clean), clean, RATE)


@pytest.mark.parametrize("metric", all_metrics(), ids=lambda m: m.name)
def test_non_finite_input_is_undefined(metric: Metric, clean: np.ndarray) -> None:
    broken = clean.copy()
    broken[100] = np.nan
    with pytest.raises(MetricUndefined, match="NaN or infinite"):
        metric.compute(clean, broken, RATE)


@pytest.mark.parametrize(
    "metric",
    [m for m in all_metrics() if m.name in {"pesq_wb", "pesq_nb", "stoi", "estoi", "csig"}],
    ids=lambda m: m.name,
)
def test_too_short_clip_is_undefined(metric: Metric, clean: np.ndarray) -> None:
    short = clean[: int(0.2 * RATE)]
    with pytest.raises(MetricUndefined, match="shorter|under 30 frames"):
        metric.compute(short, short * 0.5, RATE)


@pytest.mark.parametrize("name", ["pesq_wb", "pesq_nb", "si_sdr", "csig", "cbak", "covl"])
def test_all_zero_estimate_is_undefined(name: str, clean: np.ndarray) -> None:
    metric = next(m for m in all_metrics() if m.name == name)
    with pytest.raises(MetricUndefined, match="silent"):
        metric.compute(clean, np.zeros_like(clean), RATE)


def test_snr_of_all_zero_estimate_is_zero_db(clean: np.ndarray) -> None:
    assert sdr_metrics.SignalToNoiseRatio().compute(clean, np.zeros_like(clean), RATE) == 0.0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (pesq.NoUtterancesError(b"No utterances detected"), "no speech activity"),
        (pesq.BufferTooShortError(b"Buffer needs to be at least 1/4 of a second long"), "1/4"),
        (ValueError("cannot convert float NaN to integer"), "NaN to integer"),
    ],
)
def test_pesq_errors_become_undefined(
    monkeypatch: pytest.MonkeyPatch, clean: np.ndarray, error: Exception, reason: str
) -> None:
    def failing(*args: object, **kwargs: object) -> float:
        raise error

    monkeypatch.setattr(pesq_metrics.pesq, "pesq", failing)
    with pytest.raises(MetricUndefined, match=reason):
        pesq_metrics.PesqWideBand().compute(clean, clean, RATE)


def test_length_mismatch_is_a_caller_error(clean: np.ndarray) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        sdr_metrics.SignalToNoiseRatio().compute(clean, clean[:-1], RATE)


# Reference values from pysepm-evo 0.1.1 (an independent Python port of Loizou's MATLAB
# code), computed offline on exactly these signals: its `llr(..., used_for_composite=True)`,
# `wss` and `SNRseg`, with PESQ from `pesq.pesq(16000, clean, estimate, "wb")` (pesq 0.0.4)
# and Hu & Loizou's coefficients clipped to [1, 5]. pysepm-evo's own `composite()` could
# not be used: it refers to an undefined PESQ variable. numba was stubbed out (identity
# `jit`) and `scipy.signal.kaiser` aliased to `scipy.signal.windows.kaiser` to import it.
REFERENCE = {
    "white_30db": dict(llr=1.585109, wss=10.74344, segsnr=13.968036, pesq=2.874257,
                       csig=3.098409, cbak=3.812677, covl=3.020997),
    "white_20db": dict(llr=2.529858, wss=17.870755, segsnr=6.892058, pesq=1.895283,
                       csig=1.471795, cbak=2.84905, covl=1.69932),
    "muffled": dict(llr=2.070242, wss=13.934347, segsnr=-1.820009, pesq=2.439561,
                    csig=2.308367, cbak=2.587909, covl=2.400342),
}


def degraded(clean: np.ndarray, case: str) -> np.ndarray:
    if case == "white_30db":
        return white_noise_at_snr(clean, 30)[0]
    if case == "white_20db":
        return white_noise_at_snr(clean, 20)[0]
    lowpass = butter(4, 3000, fs=RATE, output="sos")
    return white_noise_at_snr(sosfilt(lowpass, clean), 25, seed=2)[0]


@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_composite_matches_reference_implementation(clean: np.ndarray, case: str) -> None:
    expected = REFERENCE[case]
    estimate = degraded(clean, case)
    measures = composite.measures(clean, estimate, RATE)
    for field in ("llr", "wss", "segsnr", "pesq"):
        assert getattr(measures, field) == pytest.approx(expected[field], abs=1e-5), field
    memo = composite.CompositeMemo()
    for metric in (composite.Csig(memo), composite.Cbak(memo), composite.Covl(memo)):
        value = metric.compute(clean, estimate, RATE)
        assert value == pytest.approx(expected[metric.name], abs=1e-5), metric.name


def test_composites_share_one_pesq_call(
    monkeypatch: pytest.MonkeyPatch, clean: np.ndarray
) -> None:
    calls = []
    real = pesq_metrics.pesq.pesq

    def counting(*args: object, **kwargs: object) -> float:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pesq_metrics.pesq, "pesq", counting)
    memo = composite.CompositeMemo()
    estimate = degraded(clean, "white_30db")
    for metric in (composite.Csig(memo), composite.Cbak(memo), composite.Covl(memo)):
        metric.compute(clean, estimate.copy(), RATE)  # equal content, new array each time
    assert len(calls) == 1
    with pytest.raises(MetricUndefined):
        composite.Csig(memo).compute(clean, np.zeros_like(clean), RATE)
    with pytest.raises(MetricUndefined):
        composite.Covl(memo).compute(clean, np.zeros_like(clean), RATE)
    assert len(calls) == 1  # the silent estimate is refused before PESQ, and remembered


def test_composite_memo_is_shared_after_pickling_and_starts_empty() -> None:
    memo = composite.CompositeMemo()
    metrics = [composite.Csig(memo), composite.Cbak(memo)]
    memo.get(speech_like(1.0), speech_like(1.0, seed=3), RATE)
    copies = pickle.loads(pickle.dumps(metrics))
    assert copies[0].memo is copies[1].memo
    assert not copies[0].memo._entries


def test_registered_composites_share_one_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = make_registry()
    assert {"pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "csig", "cbak", "covl"} <= set(
        registry.names("metrics")
    )
    memos = {id(registry.get("metrics", name).memo) for name in ("csig", "cbak", "covl")}
    assert len(memos) == 1
