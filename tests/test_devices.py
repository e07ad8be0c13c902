"""Devices: the `run.device` setting, GPU placement by the executors, and the numerics a
trial trains in. This machine may have no GPU, so what needs one is checked through what
the executors hand their workers (CUDA_VISIBLE_DEVICES), not through CUDA itself;
`benchmarks/gpu_check.sh` checks the rest on a GPU."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from kdbench_plugins.executors.local import LocalExecutor, _next_gpu
from stores import a_student
from test_runner import TINY, TINY_CLI
from test_training import SETTINGS, _utterances

from kdbench.api import ConfigError, resolve_device, run_on_node
from kdbench.api.executors import adopt_outputs
from kdbench.api.latents import resample, resample_by_matrices
from kdbench.cli import main
from kdbench.config import load_config
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import build_grid
from kdbench.train.trainer import _checked

TESTS = Path(__file__).parent
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")



# --------------------------------------------------------------------------- the setting


@pytest.mark.parametrize("setting", ["gpu", "cuda:x", "CPU", "cuda0"])
def test_a_malformed_device_is_refused_when_the_config_loads(setting):
    with pytest.raises(ConfigError, match=r"run\.device: .* is not one of: auto, cpu, cuda, cuda:N"):
        load_config("ci", [f"run.device={setting}"])


@no_gpu
def test_auto_is_the_cpu_and_a_gpu_that_is_not_there_is_a_one_line_error():
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    for setting in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"run.device={setting}: no CUDA device is visible"):
            resolve_device(setting)


def _run_cli(store: Path, cache: Path, *extra: str):
    return CliRunner().invoke(
        main,
        ["run", "--preset", "ci", *TINY_CLI, "--seeds", "0", "--results", str(store), *extra],
        env={"KDBENCH_CACHE": str(cache), "COLUMNS": "200"},
    )


def _scores(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT trial_id, utterance, metric, value FROM scores ORDER BY 1, 2, 3"
        ).fetchall()


@no_gpu
def test_cpu_and_auto_run_the_same_trials_to_the_same_numbers_and_cuda_is_refused(
    tmp_path, session_cache
):
    """Two stores: every trial runs under each setting (the teacher is trained once, in the
    shared cache, and scored in each)."""
    auto = _run_cli(tmp_path / "auto" / "results.db", session_cache)
    assert auto.exit_code == 0, auto.output
    cpu = _run_cli(tmp_path / "cpu" / "results.db", session_cache, "--set", "run.device=cpu")
    assert cpu.exit_code == 0, cpu.output
    first, second = _scores(tmp_path / "auto" / "results.db"), _scores(tmp_path / "cpu" / "results.db")
    assert len(first) == 4 * 2  # noisy, teacher, cosine and none students × 2 utterances
    assert first == second  # same ids, bit-identical values

    refused = _run_cli(tmp_path / "cuda" / "results.db", session_cache, "--set", "run.device=cuda")
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run.device=cuda: no CUDA device"), lines
    with sqlite3.connect(tmp_path / "cuda" / "results.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


@no_gpu
def test_denoise_asked_for_a_missing_gpu_says_so_in_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["denoise", "in.wav", "out.wav", "--trial", "x", "--device", "cuda",
               "--results", str(tmp_path / "results.db")],
    )
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --device=cuda: no CUDA device is visible")


def test_the_device_is_provenance_and_precision_is_identity():
    registry = get_registry()

    def ids(*overrides: str) -> dict[str, str]:
        config = load_config("ci", [*TINY, *overrides], registry)
        grid = build_grid(config, registry, Path("/nonexistent"), Path("/nonexistent"),
                          data="skip")
        return {(trial.role, trial.label()): trial.id for trial in grid.trials}

    default = ids()
    assert ids("run.device=cpu") == ids("run.device=cuda:3") == ids("run.deterministic=false") == default
    assert ids("train.precision=fp32") == ids("train.lr_schedule=constant") == default
    assert ids("train.suppression_weight=1") == default != ids("train.suppression_weight=2")
    assert ids("teacher.lr_schedule=cosine") != default
    bf16 = ids("train.precision=bf16")
    students = [key for key in default if key[0] == "student"]
    assert all(bf16[label] != default[label] for label in students)
    assert all(bf16[label] == default[label] for label in default if label not in students)
    teacher_bf16 = ids("teacher.precision=bf16")
    assert all(teacher_bf16[key] != default[key] for key in default if key[0] != "noisy")


# --------------------------------------------------------------------------- placement


def test_local_workers_spread_over_the_gpus_and_a_pinned_device_is_left_alone(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    from runner_plugins import DeviceProbe, visible_devices

    monkeypatch.setattr("kdbench_plugins.executors.local.visible_gpus", lambda: ["3", "5"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    items = [DeviceProbe(f"t{index}", device="auto") for index in range(6)]
    results = list(LocalExecutor().run(visible_devices, items, 3, {}, lambda item, why: why))
    gpu_of_worker = {pid: gpu for _, gpu, pid in results}
    assert len({(pid, gpu) for _, gpu, pid in results}) == len(gpu_of_worker)  # one GPU each
    assert sorted(gpu_of_worker.values()) == ["3", "3", "5"]  # round-robin over 3 workers
    assert sorted(name for name, _, _ in results) == [item.name for item in items]

    pinned = [DeviceProbe(f"p{index}", device="cuda:1") for index in range(2)]
    assert {gpu for _, gpu, _ in LocalExecutor().run(visible_devices, pinned, 2, {}, None)} == {None}


def test_a_replacement_worker_takes_the_gpu_with_the_fewest_workers():
    class Placed:
        def __init__(self, gpu):
            self.gpu = gpu

    assert _next_gpu([], []) is None
    assert _next_gpu(["0", "1"], [Placed("0")]) == "1"
    assert _next_gpu(["0", "1"], [Placed("0"), Placed("1"), Placed("1")]) == "0"


@no_gpu
def test_the_local_executor_refuses_a_gpu_this_machine_lacks_before_running_anything():
    with pytest.raises(ConfigError, match="run.device=cuda: no CUDA device"):
        LocalExecutor().check([type("T", (), {"device": "cuda"})()], 1, {})


@pytest.mark.ray
def test_ray_trials_share_a_gpu_by_fractions_and_see_only_the_one_they_reserved(monkeypatch):
    """Ray is told the machine has one GPU (it need not exist): half a GPU each puts two
    trials on it, each told by CUDA_VISIBLE_DEVICES; a trial that reserves none sees none."""
    ray = pytest.importorskip("ray")
    monkeypatch.syspath_prepend(str(TESTS))
    from runner_plugins import DeviceProbe, visible_devices

    executor = get_registry().get("executors", "ray")
    params = {"address": "", "cpus_per_trial": 1.0, "gpus_per_trial": 0.5, "max_retries": 0}
    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    try:
        items = [DeviceProbe(f"t{index}") for index in range(2)]
        executor.check(items, 2, params)
        shared = list(executor.run(visible_devices, items, 2, params, None))
        assert sorted(gpu for _, gpu, _ in shared) == ["0", "0"]
        unreserved = list(executor.run(visible_devices, items[:1], 1, {**params, "gpus_per_trial": 0.0}, None))
        assert [gpu for _, gpu, _ in unreserved] == [""]
        with pytest.raises(ConfigError, match="gpus_per_trial=2: the largest Ray node offers 1 GPU"):
            executor.check(items, 1, {**params, "gpus_per_trial": 2.0})
        with pytest.raises(ConfigError, match="run.device=cuda: a Ray trial sees a GPU only if"):
            executor.check([DeviceProbe("c", device="cuda")], 1, {**params, "gpus_per_trial": 0.0})
        with pytest.raises(ConfigError, match="reserves 3 CPU.* the largest Ray node offers 2"):
            executor.check(items, 1, {**params, "cpus_per_trial": 3.0})
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- nodes


class _Portable:
    """A NodePortable item: reads `model.bin` from its cache, leaves `out.bin` in results."""

    def __init__(self, cache_dir: Path, results_dir: Path) -> None:
        self.cache_dir, self.results_dir = Path(cache_dir), Path(results_dir)

    def node_inputs(self):
        return {"model": self.cache_dir / "model.bin"}

    def node_outputs(self):
        return {"out": self.results_dir / "out.bin"}

    def on_node(self, cache_dir, results_dir):
        return _Portable(cache_dir, results_dir)


def _double(item: _Portable, on_step) -> str:
    data = (item.cache_dir / "model.bin").read_bytes()
    (item.results_dir / "out.bin").write_bytes(data * 2)
    return str(item.cache_dir)


def test_an_item_runs_on_a_node_from_shipped_inputs_and_its_outputs_come_home(tmp_path, monkeypatch):
    driver = _Portable(tmp_path / "driver-cache", tmp_path / "driver-results")
    node_cache = tmp_path / "node-cache"
    monkeypatch.setenv("KDBENCH_CACHE", str(node_cache))
    (node_cache / "model.bin").parent.mkdir(parents=True)
    (node_cache / "model.bin").write_bytes(b"stale")  # the driver's copy wins
    result, outputs = run_on_node(_double, driver, {"model": b"ab"}, None)
    assert result == str(node_cache) and (node_cache / "model.bin").read_bytes() == b"ab"
    assert outputs == {"out": b"abab"} and not driver.results_dir.exists()
    adopt_outputs(driver, outputs)
    assert (driver.results_dir / "out.bin").read_bytes() == b"abab"


def test_a_score_only_student_takes_its_weights_to_the_node_and_brings_nothing_back(tmp_path):
    trained = a_student(
        "abc", cache_dir=str(tmp_path / "cache"), results_dir=str(tmp_path / "results"),
        teacher_settings={"seed": 0, "checkpoint": "best_valid"},
        teacher_spec={"family": "unet", "params": {}},
    )
    assert set(trained.node_inputs()) == {"teacher"}
    assert trained.node_outputs() == {"student": tmp_path / "results" / "students" / "abc.pt"}
    rescored = dataclasses.replace(trained, score_only=("realspeech",))
    assert rescored.node_inputs()["student"] == tmp_path / "results" / "students" / "abc.pt"
    assert rescored.node_outputs() == {}


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("mode", ["pool", "interpolate"])
def test_deterministic_resampling_is_the_same_map_as_the_op(mode):
    x = torch.randn(2, 3, 65, 32, dtype=torch.float64, requires_grad=True)
    for grid in [(17, 8), (33, 40), (65, 8)]:
        by_op, by_matrices = resample(x, grid, mode), resample_by_matrices(x, grid, mode)
        torch.testing.assert_close(by_matrices, by_op, rtol=0, atol=1e-12)
        weights = torch.randn_like(by_op)
        (grad_op,) = torch.autograd.grad((by_op * weights).sum(), x)
        (grad_matrices,) = torch.autograd.grad((by_matrices * weights).sum(), x)
        torch.testing.assert_close(grad_matrices, grad_op, rtol=0, atol=1e-12)


def test_a_batched_loss_check_names_the_first_non_finite_step():
    losses = [torch.tensor(1.0), torch.tensor(float("inf")), torch.tensor(float("nan"))]
    with pytest.raises(Exception, match=r"non-finite loss \(inf\) at step 9 of 20"):
        _checked(losses, 10, 20)
    finite = [torch.tensor(1.0), torch.tensor(0.5)]
    assert _checked(finite, 4, 20) == 0.5 and finite == []


def test_bf16_trains_to_finite_weights_other_than_fp32s():
    from kdbench_plugins.models.unet import build_unet

    from kdbench.train.trainer import train

    data = _utterances(4)
    weights = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_unet({"channels": [2, 4]})
        result = train(model, data, data[:1], {**SETTINGS, "precision": precision}, seed=0, sample_rate=16000)
        assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in result.history)
        weights[precision] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.equal(weights["fp32"], weights["bf16"])
    assert all(value.dtype == torch.float32 for value in weights.values())

