"""A real two-node Ray cluster on loopback: a grid survives losing a node, and no node
needs the driver's disk.

The head and a worker node at 127.0.0.2 (Linux routes all of 127/8 to loopback, so the
two nodes have distinct addresses on one machine) are started with `ray start`, one CPU
each, each with its own KDBENCH_CACHE and Ray temp folder; the driver is `kdbench run
--executor ray --address` with a third cache, and joins the head. Once the
worker node has started a trial (its cache holds the corpus it prepared), it is killed
like a lost machine: its raylet and every process of that node get SIGKILL.

Teardown ends exactly the processes of these two nodes, found by their temp folders,
instead of `ray stop`: that stops every Ray process of the user on the machine, and CI
machines and developer machines may be running other Ray instances.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

TINY = [
    "run.pairs=width",
    "run.metrics=si_sdr",
    "train.steps=4",
    "teacher.steps=4",
]
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",  # a loopback test cluster; Ray 2.5x+ wants a token otherwise
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_memory_monitor_refresh_ms": "0",  # a busy CI machine's memory is not this test's fault
    # notice a dead node in about a second, not the default half minute
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "2",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pids_under(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (every process of one Ray node does)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in command:
            pids.append(int(entry.name))
    return pids


def _kill_node(folder: Path) -> None:
    for pid in _pids_under(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ray_start(folder: Path, cache: Path, *args: str) -> None:
    """`ray start` with this interpreter's Ray (a console script may name another Python)."""
    subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus", "1",
         "--num-gpus", "0", "--temp-dir", str(folder), "--disable-usage-stats", *args],
        env={**os.environ, **RAY_ENV, "KDBENCH_CACHE": str(cache)},
        check=True, capture_output=True, timeout=120,
    )


@pytest.fixture
def cluster():
    """(address, head folder, worker folder, head cache, worker cache); short paths, as Ray's
    socket paths must fit 107 characters."""
    pytest.importorskip("ray")
    if not Path("/proc").is_dir():
        pytest.skip("finds a node's processes through /proc")
    root = Path(tempfile.mkdtemp(prefix="kdr", dir="/tmp"))
    head, worker = root / "ray-head", root / "ray-worker"
    port = _free_port()
    try:
        _ray_start(head, root / "cache-head", "--head", "--port", str(port),
                   "--include-dashboard", "false")
        _ray_start(worker, root / "cache-worker", "--address", f"127.0.0.1:{port}",
                   "--node-ip-address", "127.0.0.2")
        yield f"127.0.0.1:{port}", head, worker, root / "cache-head", root / "cache-worker"
    finally:
        _kill_node(worker)
        _kill_node(head)
        shutil.rmtree(root, ignore_errors=True)


def test_a_grid_on_two_nodes_survives_losing_one_and_needs_no_shared_disk(cluster, tmp_path):
    address, _, worker, head_cache, worker_cache = cluster
    store = tmp_path / "results" / "results.db"
    command = [
        sys.executable, "-c", "from kdbench.cli import main; main()",
        "run", "--preset", "ci", *(arg for item in TINY for arg in ("--set", item)),
        "--executor", "ray", "--address", address, "--jobs", "2", "--set", "executor.ray.cpus_per_trial=1", "--results", str(store),
    ]
    driver_cache = tmp_path / "driver-cache"
    env = {**os.environ, **RAY_ENV, "KDBENCH_CACHE": str(driver_cache), "COLUMNS": "120"}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not list(worker_cache.glob("procedural-*")):  # the node is into its first trial
            assert driver.poll() is None, driver.communicate()[0].decode()
            assert time.monotonic() < deadline, "the worker node never started a trial"
            time.sleep(0.1)
        assert driver.poll() is None, "the grid ended before the node could be lost"
        _kill_node(worker)
        output = driver.communicate(timeout=240)[0].decode()
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output

    with sqlite3.connect(store) as db:
        trials = db.execute("SELECT id, role, status, error FROM trials").fetchall()
        per_trial = dict(db.execute("SELECT trial_id, COUNT(*) FROM scores GROUP BY trial_id"))
    assert len(trials) == len({row[0] for row in trials}) == 6  # noisy, teacher, 2 methods × 2 seeds
    assert all(status == "done" or (status == "failed" and error) for _, _, status, error in trials)
    done = [row for row in trials if row[2] == "done"]
    assert all(per_trial[row[0]] == 4 for row in done)  # 4 test utterances × 1 metric, once each
    assert "ran 6 trial(s)" in output
    # What nodes made came home to the driver, which alone wrote the store.
    students = {row[0] for row in done if row[1] == "student"}
    assert {path.stem for path in (store.parent / "students").glob("*.pt")} == students
    assert list((driver_cache / "teachers").glob("*.pt")), "the teacher's checkpoint never came back"
    assert list(head_cache.glob("procedural-*"))  # prepared there, not read from the driver
    for node_cache in (head_cache, worker_cache):
        assert not list(node_cache.rglob("*.db")) and not list(node_cache.rglob("students"))
