"""Where does a teacher fall short of the oracle mask? SI-SDR of the noisy input, a teacher
and the oracle ratio mask on the quick preset's *validation* split, by noise type, SNR and
room, so that the next teacher recipe is aimed at what is missing (issue 15's gap).

    .venv/bin/python tools/oracle_gap.py [TEACHER.pt]   # default: configs/teachers/quick-seed0.pt

The oracle is |clean| / |noisy| clipped to [0, 1] on the teacher's own STFT (its `stft` and
`istft`) with the noisy phase: the best a magnitude mask of that analysis can do. Scores are
the registered `si_sdr` metric's. Only the validation split is read; it prints the three
tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdbench.api import MaskDenoiser
from kdbench.config import load_config
from kdbench.deploy.checkpoints import build_from_checkpoint
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.trial import denoise_utterances

ROOT = Path(__file__).resolve().parents[1]


def oracle_mask(model: MaskDenoiser, clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """The clipped ideal ratio mask applied on `model`'s analysis, with the noisy phase."""
    with torch.no_grad():
        clean_spec, noisy_spec = (model.stft(torch.from_numpy(x)) for x in (clean, noisy))
        mask = (clean_spec.abs() / noisy_spec.abs().clamp_min(1e-8)).clamp(0, 1)
        return model.istft(mask * noisy_spec, len(noisy)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", nargs="?", type=Path,
                        default=ROOT / "configs" / "teachers" / "quick-seed0.pt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    config = load_config("quick", [], registry)
    dataset = registry.get("datasets", "procedural").prepare(
        config.plugin_params("dataset", "procedural"), cache_root()
    )
    valid = dataset.splits["valid"]
    teacher = build_from_checkpoint(args.teacher, registry)[0].eval()
    metric = registry.get("metrics", "si_sdr")
    rows = []
    for utterance, estimate in zip(valid, denoise_utterances(teacher, valid)):
        clean = np.asarray(utterance.clean, np.float32)
        noisy = np.asarray(utterance.noisy, np.float32)
        estimates = {"noisy": noisy, "teacher": estimate,
                     "oracle": oracle_mask(teacher, clean, noisy)}
        rows.append({
            "noise": utterance.meta["noise"], "snr_db": utterance.meta["snr_db"],
            "room": utterance.meta.get("rt60_s") is not None,
            **{name: metric.compute(clean, np.asarray(x, np.float32), dataset.sample_rate)
               for name, x in estimates.items()},
        })
    frame = pd.DataFrame(rows)
    for key in ("noise", "snr_db", "room"):
        table = frame.groupby(key)[["noisy", "teacher", "oracle"]].mean()
        table["utterances"] = frame.groupby(key).size()
        table["oracle - teacher"] = table["oracle"] - table["teacher"]
        print(table.round(2).to_string(), end="\n\n")
    print("all:", frame[["noisy", "teacher", "oracle"]].mean().round(2).to_dict())


if __name__ == "__main__":
    main()
