"""Train the shipped quick teachers, or check that the shipped files are what their recipe trains.

    .venv/bin/python tools/train_teachers.py train [--seed N]   # (re)train, write file + manifest
    .venv/bin/python tools/train_teachers.py check              # files, hashes, keys, scores
    .venv/bin/python tools/train_teachers.py check --retrain    # ... and train each one again
                                                   # (--seed N: that teacher only)

A teacher worth distilling from takes longer to train than the README's main job may last on
two cores, so the quick preset loads teachers that kdbench trained (`teacher.checkpoint`)
instead of training one per run. This script is how they were made and how anyone re-makes
them: the recipe is `configs/teachers/recipe.toml` (a preset and its overrides), the training
is kdbench's own teacher path (`get_teacher`, the same code and cache a grid uses), and
`configs/teachers/MANIFEST.json` records for every file its sha256, the digest of its weights,
its teacher key (which hashes the spec, the dataset identity and every setting), the
validation curve, its scores on the *validation* split, and the command, commit, date and
numeric platform that made it.

How reproduction is checked:
- `check` (cheap, also run by the test suite): every file's sha256 matches the manifest; the
  recipe, read with today's code and today's corpus, still gives the manifest's teacher key (a
  change to the corpus or the settings' meaning fails here); the weights load and score the
  validation utterances the manifest recorded, to `SCORE_TOLERANCE`.
- `check --retrain` (about 20 min per teacher on one core): trains each teacher again from the
  recipe in a scratch cache. On the recording platform (same fingerprint) the weights must be
  bit-identical; elsewhere floating-point order differs and training drifts like a change of
  seed, so the script reports the validation scores side by side instead of failing.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
import torch

from kdbench.config import load_config
from kdbench.deploy.checkpoints import build_from_checkpoint
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.evaluate import score_utterances
from kdbench.run.grid import select_pairs, teacher_settings
from kdbench.run.identity import file_sha256
from kdbench.run.platform import describe
from kdbench.run.trial import denoise_utterances
from kdbench.train.teacher import get_teacher, teacher_key

TEACHERS = Path(__file__).resolve().parent.parent / "configs" / "teachers"
RECIPE = TEACHERS / "recipe.toml"
MANIFEST = TEACHERS / "MANIFEST.json"
VALID_METRICS = ("pesq_wb", "stoi", "si_sdr")
CHECKED_UTTERANCES = 4
"""Validation utterances whose scores `check` recomputes from the shipped weights."""
SCORE_TOLERANCE = 0.01
"""How close a recomputed validation score must be: inference of the same weights on another
CPU differs in its last bits (PESQ may move in its third decimal); another teacher, or a
model built or run differently, moves it by far more."""


def read_recipe() -> dict[str, Any]:
    with RECIPE.open("rb") as handle:
        return tomllib.load(handle)


def file_name(seed: int) -> str:
    return f"{read_recipe()['preset']}-seed{seed}.pt"


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of the weights alone: a re-trained file differs in its metadata (the training
    time), not in these bytes, when training reproduced."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _setup(seed: int, cache_dir: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The registry, the teacher's spec, the prepared training dataset and the settings."""
    recipe = read_recipe()
    torch.set_num_threads(int(recipe["threads"]))
    registry = get_registry()
    config = load_config(recipe["preset"], [*recipe["set"], f"teacher.seeds={seed}"], registry)
    (dataset_name,) = config.run["datasets"]
    dataset = registry.get("datasets", dataset_name).prepare(
        config.plugin_params("dataset", dataset_name), cache_dir
    )
    pair = registry.get("pairs", select_pairs(config, registry, ["all"])[0])
    return registry, pair.teacher, dataset, teacher_settings(config, seed)


def validation_scores(
    model: Any | None, dataset: Any, count: int | None = None
) -> list[dict[str, Any]]:
    """Per-utterance validation scores of `model` (None: of the noisy input itself). Never
    the test split: these choose nothing either, they let a reader and `check` compare
    teachers."""
    registry = get_registry()
    metrics = [registry.get("metrics", name) for name in VALID_METRICS]
    utterances = dataset.splits["valid"][:count]
    estimates = (
        [np.asarray(u.noisy, np.float32) for u in utterances]
        if model is None
        else denoise_utterances(model, utterances)
    )
    items = [
        (utterance.id, np.asarray(utterance.clean, np.float32), estimate)
        for utterance, estimate in zip(utterances, estimates)
    ]
    return [
        {"utterance": s.utterance, "metric": s.metric, "value": s.value}
        for s in score_utterances(metrics, items, dataset.sample_rate, jobs=1)
    ]


def means(scores: list[dict[str, Any]]) -> dict[str, float]:
    """Each metric's mean over the utterances of `validation_scores`, leaving out scores a
    metric could not give (NaN: PESQ finds no speech in two quiet +10 dB mixtures of the
    real-speech dev set)."""
    return {
        metric: float(np.nanmean([s["value"] for s in scores if s["metric"] == metric]))
        for metric in VALID_METRICS
    }


def _commit() -> str:
    root = TEACHERS.parent.parent
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True,
    ).stdout.strip()
    return head + (" (with uncommitted changes)" if dirty else "")


def _train(seed: int, cache_dir: Path) -> tuple[Any, dict[str, Any], Any, str]:
    registry, spec, dataset, settings = _setup(seed, cache_dir)

    def on_step(step: int, steps: int) -> None:
        if step % 200 == 0 or step == steps:
            print(f"  teacher seed {seed}: step {step}/{steps}", flush=True)

    model, meta = get_teacher(registry, spec, dataset, settings, cache_dir, on_step=on_step)
    return model, meta, dataset, teacher_key(spec, dataset.identity, settings)


def _record(recipe: dict[str, Any], seed: int, entry: dict[str, Any]) -> None:
    """Add one teacher to the manifest under a lock: teachers train in parallel processes."""
    with (TEACHERS / ".manifest.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"teachers": {}}
        manifest["recipe"] = recipe
        manifest["teachers"][str(seed)] = entry
        MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def train_command(args: argparse.Namespace) -> int:
    recipe = read_recipe()
    seeds = [args.seed] if args.seed is not None else list(recipe["seeds"])
    for seed in seeds:
        started = time.time()
        model, meta, dataset, key = _train(seed, Path(args.cache))
        target = TEACHERS / file_name(seed)
        shutil.copyfile(meta["path"], target)
        scores = validation_scores(model, dataset)
        entry = {
            "file": target.name,
            "sha256": file_sha256(target),
            "weights_sha256": weights_digest(model),
            "teacher_key": key,
            "dataset_identity": dataset.identity,
            "kept_step": meta["kept_step"],
            "best_valid_loss": meta["best_valid_loss"],
            "train_seconds": round(meta["train_seconds"], 1),
            "history": meta["history"],
            "valid_means": means(scores),
            "valid_checked": scores[: CHECKED_UTTERANCES * len(VALID_METRICS)],
            "command": " ".join(["python", *sys.argv]),
            "commit": _commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "platform": describe("cpu"),
            "wall_seconds": round(time.time() - started, 1),
        }
        _record(recipe, seed, entry)
        print(f"seed {seed}: {target.name} valid {entry['valid_means']}")
    return 0


def check_command(args: argparse.Namespace) -> int:
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    for seed_text, entry in sorted(manifest["teachers"].items()):
        seed = int(seed_text)
        if args.seed is not None and seed != args.seed:
            continue
        problems += check_teacher(seed, entry, Path(args.cache))
        if args.retrain:
            problems += retrain_and_compare(seed, entry)
    for problem in problems:
        print(f"FAIL {problem}")
    print("all shipped teachers check" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def check_teacher(seed: int, entry: dict[str, Any], cache_dir: Path) -> list[str]:
    """What the test suite checks too: file hash, teacher key, recorded validation scores."""
    path = TEACHERS / entry["file"]
    if file_sha256(path) != entry["sha256"]:
        return [f"{path}: sha256 differs from the manifest"]
    registry, spec, dataset, settings = _setup(seed, cache_dir)
    problems = []
    if teacher_key(spec, dataset.identity, settings) != entry["teacher_key"]:
        problems.append(
            f"seed {seed}: the recipe gives another teacher key with today's code and corpus "
            f"(dataset {dataset.identity}, manifest {entry['dataset_identity']}): retrain"
        )
    model, _payload = build_from_checkpoint(path, registry)
    if weights_digest(model) != entry["weights_sha256"]:
        problems.append(f"{path}: weights digest differs from the manifest")
    recorded = entry["valid_checked"]
    again = validation_scores(model, dataset, CHECKED_UTTERANCES)
    for old, new in zip(recorded, again):
        if old["utterance"] != new["utterance"] or abs(old["value"] - new["value"]) > SCORE_TOLERANCE:
            problems.append(f"seed {seed}: validation score {old} recomputed as {new}")
    return problems


def retrain_and_compare(seed: int, entry: dict[str, Any]) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="kdbench-teacher-") as scratch:
        model, _meta, dataset, _key = _train(seed, Path(scratch))
        same_platform = describe("cpu")["fingerprint"] == entry["platform"]["fingerprint"]
        identical = weights_digest(model) == entry["weights_sha256"]
        retrained = means(validation_scores(model, dataset))
    print(f"seed {seed}: shipped valid {entry['valid_means']}")
    print(f"seed {seed}: retrained    {retrained} (weights identical: {identical})")
    if same_platform and not identical:
        return [f"seed {seed}: retrained on the recording platform but the weights differ"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=str(cache_root()), help="kdbench's cache root")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train")
    train.add_argument("--seed", type=int)
    check = commands.add_parser("check")
    check.add_argument("--retrain", action="store_true")
    check.add_argument("--seed", type=int, help="check this teacher seed only")
    args = parser.parse_args()
    return train_command(args) if args.command == "train" else check_command(args)


if __name__ == "__main__":
    sys.exit(main())
