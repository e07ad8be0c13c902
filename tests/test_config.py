"""Presets and overrides: every bad key names itself and what is allowed."""

from __future__ import annotations

import pytest

from kdbench.api import Param
from kdbench.config import load_config, preset_names
from kdbench.errors import ConfigError


def test_shipped_presets_load_and_quick_is_there():
    assert {"quick", "ci"} <= set(preset_names())
    for name in preset_names():
        load_config(name)


def test_overrides_are_coerced_to_the_declared_types():
    config = load_config("quick", ["train.steps=7", "run.seeds=3,4", "train.lr=1e-4"])
    assert config.train["steps"] == 7
    assert config.run["seeds"] == [3, 4]
    assert config.train["lr"] == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stepz=3", r"train\.stepz: unknown parameter; allowed: .*steps"),
        ("trian.steps=3", r"trian: unknown section; allowed: .*train"),
        ("train.steps=many", r"train\.steps: expected int, got 'many'"),
        ("train.checkpoint=best_test", r"train\.checkpoint: 'best_test' is not one of: last, best_valid"),
        ("method.cosine.wieght=1", r"method\.cosine\.wieght: unknown parameter; allowed: .*weight"),
        ("method.cosinus.weight=1", r"unknown method 'cosinus'"),
        ("dataset.procedural.n_trian=3", r"dataset\.procedural\.n_trian: unknown parameter"),
        ("nonsense", r"expected section\.key=value"),
        ("train.steps=0", r"train\.steps: must be >= 1, got 0"),
        ("train.lr=0", r"train\.lr: must be > 0, got 0\.0"),
        ("train.lr=nan", r"train\.lr: must be a number, got nan"),
        ("run.seeds=0,-1", r"run\.seeds: must be >= 0, got -1"),
        ("run.jobs=0", r"run\.jobs: must be >= 1, got 0"),
        ("teacher.seeds=-2", r"teacher\.seeds: must be >= 0, got -2"),
        ("method.cosine.weight=-1", r"method\.cosine\.weight: must be >= 0, got -1\.0"),
        ("method.fgspkd.pretrain_fraction=1.5", r"method\.fgspkd\.pretrain_fraction: must be <= 1"),
        # dataset plugins declare their ranges too: refused when the preset is read (a dry run
        # says so), not when the corpus is generated
        ("dataset.procedural.n_train=-1", r"dataset\.procedural\.n_train: must be >= 0, got -1"),
        ("dataset.procedural.talkers_test=0", r"dataset\.procedural\.talkers_test: must be >= 1"),
        ("dataset.procedural.seconds=0.5", r"dataset\.procedural\.seconds: must be >= 1, got 0\.5"),
        ("dataset.procedural.rooms=1.5", r"dataset\.procedural\.rooms: must be <= 1, got 1\.5"),
        ("dataset.procedural.snrs=5,loud", r"dataset\.procedural\.snrs: expected a list of float"),
        ("dataset.espeak.voices_valid=0", r"dataset\.espeak\.voices_valid: must be >= 1, got 0"),
        ("dataset.mix.seconds=0", r"dataset\.mix\.seconds: must be > 0, got 0\.0"),
        ("train.suppression_weight=0.5", r"train\.suppression_weight: must be >= 1, got 0\.5"),
        # a weight the chosen loss cannot apply is refused, not silently ignored
        (
            "train.task_loss=si_sdr train.suppression_weight=2",
            r"train: train\.suppression_weight=2 applies to task_loss magnitude_l1 only, not si_sdr",
        ),
    ],
)
def test_bad_keys_and_values_name_the_key_and_the_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("quick", override.split())


def test_unknown_preset_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="unknown preset 'quik'.*quick"):
        load_config("quik")


def test_a_preset_file_path_works(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[run]\ndatasets = ["procedural"]\nmetrics = ["si_sdr"]\n[train]\nsteps = 5\n')
    assert load_config(str(path)).train["steps"] == 5


def test_the_core_names_no_plugin_so_a_preset_must(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text('[run]\nmetrics = ["si_sdr"]\n')
    with pytest.raises(ConfigError, match="run.datasets: the preset names none"):
        load_config(str(path))


def test_a_bound_is_declared_only_on_numbers():
    """A bound on a string would fail only when a user sets it; the plugin author hears now."""
    with pytest.raises(TypeError, match="at_least/above/at_most need an int or float"):
        Param("x", "a name", str, at_least=1)
    assert Param([0], "seeds", list, item_type=int, at_least=0).coerce("k", "3,4") == [3, 4]
