"""The pieces of the published site that need no grid: the Pareto front and the choice of
audio examples. (The site itself is tested on a real grid, in a real browser, in
test_leaderboard.py.)"""

from __future__ import annotations

import math

import numpy as np

from kdbench.api import Utterance
from kdbench.report.listening import SNR_BANDS, choose_utterances, input_snr_db
from kdbench.report.plots import pareto_front


def test_pareto_front_keeps_only_undominated_points():
    points = [(10.0, 1.0), (5.0, 0.8), (20.0, 0.9), (5.0, 0.7), (40.0, 1.2), (30.0, 1.2)]
    assert pareto_front(points, higher_is_better=True) == [(5.0, 0.8), (10.0, 1.0), (30.0, 1.2)]
    lower = [(1.0, 3.0), (2.0, 2.0), (3.0, 2.5), (4.0, 1.0)]
    assert pareto_front(lower, higher_is_better=False) == [(1.0, 3.0), (2.0, 2.0), (4.0, 1.0)]
    assert pareto_front([], higher_is_better=True) == []


def _mixture(name: str, snr_db: float, rng: np.random.Generator) -> Utterance:
    clean = rng.standard_normal(8000).astype(np.float32)
    noise = rng.standard_normal(8000)
    noise *= math.sqrt(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2)) / 10 ** (snr_db / 20)
    return Utterance(name, clean, (clean + noise).astype(np.float32))


def test_one_utterance_per_snr_band_first_in_split_order():
    rng = np.random.default_rng(0)
    split = [_mixture(name, snr, rng) for name, snr in
             [("a", 10.0), ("b", -5.0), ("c", 20.0), ("d", 0.0), ("e", 5.0), ("f", 15.0)]]
    assert abs(input_snr_db(split[0]) - 10.0) < 1e-3
    assert abs(input_snr_db(split[1]) + 5.0) < 1e-3
    chosen = choose_utterances(split)
    assert [(band, u.id) for band, u, _ in chosen] == [
        (SNR_BANDS[0][2], "b"), (SNR_BANDS[1][2], "a"), (SNR_BANDS[2][2], "c")]
    assert [u.id for _, u, _ in choose_utterances(split[2:])] == ["d", "e", "c"]
    assert [u.id for _, u, _ in choose_utterances([split[0]])] == ["a"]  # empty bands skipped
