"""score_utterances: order, parallel equals serial, failures become NaN with a reason."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch
from kdbench_plugins.metrics.sdr_metrics import ScaleInvariantSdr, SignalToNoiseRatio
from signals import speech_like, white_noise_at_snr

from kdbench.api import Metric, MetricUndefined
from kdbench.run import evaluate
from kdbench.run.evaluate import Score, score_utterances

RATE = 16000


class Peak(Metric):
    """Defined at module level so spawned workers can unpickle it."""

    name = "peak"
    description = "largest absolute sample of the estimate"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        if not np.any(estimate):
            raise MetricUndefined("estimate is silent")
        return float(np.max(np.abs(estimate)))


class ThreadCount(Metric):
    name = "threads"
    description = "torch's intra-op thread count where the metric runs"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        return float(torch.get_num_threads())


class Broken(Metric):
    name = "broken"
    description = "always fails with an unexpected error"

    def compute(self, clean: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
        raise RuntimeError("bug in metric")


def items(count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    result = []
    for index in range(count):
        clean = speech_like(0.5, RATE, seed=index)
        result.append((f"utt{index:02d}", clean, white_noise_at_snr(clean, index, seed=index)[0]))
    return result


def test_scores_come_back_in_input_order_with_values() -> None:
    scores = score_utterances([SignalToNoiseRatio(), ScaleInvariantSdr()], items(3), RATE)
    assert [(s.utterance, s.metric) for s in scores] == [
        (u, m) for u in ("utt00", "utt01", "utt02") for m in ("snr", "si_sdr")
    ]
    snr_values = [s.value for s in scores if s.metric == "snr"]
    assert snr_values == pytest.approx([0.0, 1.0, 2.0], abs=1e-9)
    assert all(s.reason is None for s in scores)


def test_undefined_and_failing_metrics_give_nan_with_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean = speech_like(0.5, RATE)
    batch = [("ok", clean, clean * 0.5), ("silent", clean, np.zeros_like(clean))]
    with caplog.at_level(logging.WARNING, logger="kdbench.run.evaluate"):
        scores = score_utterances([Peak(), Broken()], batch, RATE)
    by_key = {(s.utterance, s.metric): s for s in scores}
    assert by_key["ok", "peak"].reason is None and math.isfinite(by_key["ok", "peak"].value)
    assert math.isnan(by_key["silent", "peak"].value)
    assert by_key["silent", "peak"].reason == "estimate is silent"
    assert math.isnan(by_key["ok", "broken"].value)
    assert by_key["ok", "broken"].reason == "RuntimeError: bug in metric"
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("broken" in message for message in warned)


def test_two_jobs_equal_one_job_and_keep_order(monkeypatch) -> None:
    monkeypatch.setattr(evaluate, "MIN_ITEMS_PER_WORKER", 1)
    metrics = [SignalToNoiseRatio(), Peak(), ScaleInvariantSdr()]
    batch = items(6) + [("silent", items(1)[0][1], np.zeros(RATE // 2))]
    seen: list[int] = []
    environment = os.environ.get("OMP_NUM_THREADS")
    serial = score_utterances(metrics, batch, RATE, jobs=1)
    parallel = score_utterances(
        [*metrics, ThreadCount()], batch, RATE, jobs=2, progress=seen.append
    )
    assert _comparable([s for s in parallel if s.metric != "threads"]) == _comparable(serial)
    assert {s.value for s in parallel if s.metric == "threads"} == {1.0}
    assert seen == sorted(seen) and seen[-1] == len(batch)
    assert os.environ.get("OMP_NUM_THREADS") == environment


def test_a_few_utterances_are_scored_without_starting_workers(monkeypatch) -> None:
    monkeypatch.setattr(evaluate, "_run_parallel", None)
    assert len(score_utterances([Peak()], items(3), RATE, jobs=2)) == 3


def test_empty_input_gives_no_scores() -> None:
    assert score_utterances([Peak()], [], RATE, jobs=2) == []


def _comparable(scores: list[Score]) -> list[tuple[str, str, float | None, str | None]]:
    """NaN != NaN, so compare undefined values as None."""
    return [
        (s.utterance, s.metric, None if math.isnan(s.value) else s.value, s.reason)
        for s in scores
    ]
