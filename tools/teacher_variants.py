"""Would another teacher leave more to distil? A variant of the shipped teachers' recipe,
trained once and scored on the *validation* split of the quick preset's corpus.

    KDBENCH_CACHE=/tmp/variants .venv/bin/python tools/teacher_variants.py NAME CHANNELS \
        [--seed N] [--set KEY=VALUE ...]
    e.g.  ... deeper '[16,32,64,128,256]'
          ... moredata '[16,32,64,128]' --set dataset.procedural.n_train=2400
          ... sisdr '[16,32,64,128]' --set teacher.task_loss=si_sdr

The recipe is `configs/teachers/recipe.toml` (seed 0 unless `--seed` says another) with the
UNet's channels replaced and the overrides applied; training is kdbench's own teacher path
(`get_teacher`, cached under `$KDBENCH_CACHE` like any teacher), scoring is
`train_teachers.validation_scores`. Whatever corpus it trains on, it is scored on the default
corpus's validation split, so variants compare with each other and with the shipped teachers'
`valid_means` in MANIFEST.json. It prints one JSON line, with the trained teacher's checkpoint
(a kdbench checkpoint, so `tools/student_variants.py --set teacher.checkpoint=PATH` can distil
from it on validation); BENCHMARKS.md §10 quotes them. The test split is never read: these
runs choose the next recipe.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from train_teachers import means, read_recipe, validation_scores

from kdbench.api import ModelSpec
from kdbench.config import load_config
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.grid import teacher_settings
from kdbench.train.teacher import get_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("channels", type=json.loads, help="the UNet's channels, a JSON list")
    parser.add_argument("--seed", type=int, default=0, help="the teacher's seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    recipe = read_recipe()
    torch.set_num_threads(int(recipe["threads"]))
    registry = get_registry()
    base = [*recipe["set"], f"teacher.seeds={args.seed}"]
    config = load_config(recipe["preset"], [*base, *args.overrides], registry)
    default = load_config(recipe["preset"], base, registry)
    plugin = registry.get("datasets", "procedural")
    trained_on = plugin.prepare(config.plugin_params("dataset", "procedural"), cache_root())
    scored_on = plugin.prepare(default.plugin_params("dataset", "procedural"), cache_root())
    spec = ModelSpec("unet", {"channels": args.channels, "kernel": 5})
    started = time.time()
    model, meta = get_teacher(
        registry, spec, trained_on, teacher_settings(config, args.seed), cache_root(),
        on_step=lambda step, _: print(args.name, step, flush=True) if step % 500 == 0 else None,
    )
    print(json.dumps({
        "name": args.name, "seed": args.seed, "channels": args.channels,
        "overrides": args.overrides, "checkpoint": meta["path"],
        "train_utterances": len(trained_on.splits["train"]),
        "params": sum(p.numel() for p in model.parameters()),
        "kept_step": meta["kept_step"], "best_valid_loss": meta["best_valid_loss"],
        "valid_means": means(validation_scores(model, scored_on)),
        "noisy_valid_means": means(validation_scores(None, scored_on)),
        "seconds": round(time.time() - started, 1),
        "valid_curve": [round(h["valid_loss"], 4) for h in meta["history"]],
    }))


if __name__ == "__main__":
    main()
