"""Where does a teacher fall short of the oracle mask? SI-SDR of the noisy input, a teacher
and the oracle ratio mask on the quick preset's *validation* split, by noise type, SNR and
room, so that the next teacher recipe is aimed at what is missing (issue 15's gap).

    .venv/bin/python tools/oracle_gap.py [TEACHER.pt]   # default: configs/teachers/quick-seed0.pt

The oracle is |clean| / |noisy| clipped to [0, 1] on the teachers' own STFT (512-point Hann,
hop 128) with the noisy phase: the best a magnitude mask of that analysis can do. Only the
validation split is read; it prints the three tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kdbench.config import load_config
from kdbench.deploy.checkpoints import build_from_checkpoint
from kdbench.files.cache import cache_root
from kdbench.plugin.registry import get_registry
from kdbench.run.trial import denoise_utterances

ROOT = Path(__file__).resolve().parents[1]
N_FFT, HOP = 512, 128


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Zero-mean SI-SDR in dB, as the `si_sdr` metric computes it."""
    estimate, reference = estimate - estimate.mean(), reference - reference.mean()
    projection = (estimate @ reference) / (reference @ reference + 1e-12) * reference
    residual = estimate - projection
    return float(10 * np.log10((projection @ projection) / (residual @ residual + 1e-12) + 1e-12))


def oracle_mask(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    spectra = [torch.stft(torch.from_numpy(x), N_FFT, HOP, window=window, return_complex=True)
               for x in (clean, noisy)]
    mask = (spectra[0].abs() / spectra[1].abs().clamp_min(1e-8)).clamp(0, 1)
    return torch.istft(mask * spectra[1], N_FFT, HOP, window=window, length=len(noisy)).numpy()


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
    rows = []
    for utterance, estimate in zip(valid, denoise_utterances(teacher, valid)):
        clean = np.asarray(utterance.clean, np.float64)
        noisy = np.asarray(utterance.noisy, np.float64)
        rows.append({
            "noise": utterance.meta["noise"], "snr_db": utterance.meta["snr_db"],
            "room": utterance.meta.get("rt60_s") is not None,
            "noisy": si_sdr(noisy, clean),
            "teacher": si_sdr(np.asarray(estimate, np.float64), clean),
            "oracle": si_sdr(oracle_mask(clean, noisy), clean),
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
