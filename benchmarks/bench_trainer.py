"""kdbench's `train()` against a bare PyTorch loop on the same student, data and threads.

The bare loop is the honest minimum a hand-written script would do: batches cropped in
advance (outside the timer) from the same training split, then forward, magnitude-L1,
backward, Adam step. `train()` additionally draws its crops, checks the loss is finite,
clips gradients (the preset's `grad_clip`) and validates every `valid_every` steps, so
two ratios are reported:

- per step: the steady-state steps only (from the end of step 1 to the end of step N-1,
  timed through `on_step`), i.e. the per-step price of the plumbing and the clipping;
- per call: the whole `train()` call (sampler set-up, validation at the last step) over
  the bare loop's N steps; with N = `valid_every` the validation share equals a grid's.
"""

from __future__ import annotations

import argparse
import time

import torch
from _report import Spread, interleave, markdown_table, provenance, ratios, update_section, verdict
from _setup import build, pair, procedural_dataset, quick_train_settings

from kdbench.api import MaskDenoiser
from kdbench.train.crops import CropSampler
from kdbench.train.trainer import train

TARGET = 1.05


def precropped(dataset, settings: dict, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The very crops `train()` draws for seed 0, prepared before the bare loop's timer."""
    rate = dataset.sample_rate
    sampler = CropSampler(
        dataset.splits["train"],
        crop_samples=int(round(settings["crop_seconds"] * rate)),
        batch_size=int(settings["batch_size"]),
        seed=0,
        grid_samples=int(round(settings["crop_grid_seconds"] * rate)),
    )
    return [sampler.next_batch()[:2] for _ in range(steps)]


def bare_loop(model: MaskDenoiser, batches, lr: float, marks: list[float]) -> None:
    """Forward, loss, backward, step; appends a timestamp after every step."""
    window = torch.hann_window(model.n_fft)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for noisy, clean in batches:
        target = torch.stft(clean, model.n_fft, model.hop, window=window, return_complex=True).abs()
        loss = (model(noisy).magnitude - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        marks.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="N; default = the preset's valid_every")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a 2-job grid on 2 cores uses 1)")
    parser.add_argument("--pair", default="width")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = procedural_dataset()
    settings = quick_train_settings(args.steps)
    spec = pair(args.pair).student
    batches = precropped(dataset, settings, args.steps)

    def run_kdbench() -> dict[str, float]:
        model, marks = build(spec), []
        start = time.perf_counter()
        train(model, dataset.splits["train"], dataset.splits["valid"], settings, seed=0,
              sample_rate=dataset.sample_rate, on_step=lambda step, total: marks.append(time.perf_counter()))
        return {"call": time.perf_counter() - start, "steps": marks[-2] - marks[0]}

    def run_bare() -> dict[str, float]:
        model, marks = build(spec), []
        start = time.perf_counter()
        bare_loop(model, batches, float(settings["lr"]), marks)
        return {"call": time.perf_counter() - start, "steps": marks[-2] - marks[0]}

    print(f"train() vs bare loop: {args.pair} student, {args.steps} steps, {args.threads} thread(s)")
    timings = interleave({"kdbench": run_kdbench, "bare": run_bare}, args.repeats)
    kd, bare = timings["kdbench"], timings["bare"]
    step_ratio = ratios(kd["steps"], bare["steps"])
    call_ratio = ratios(kd["call"], bare["call"])

    def ms(values: list[float], steps: int) -> str:
        return f"{Spread.of(values).median / steps * 1e3:.1f}"

    rows = [
        ["per step (steps 2…N-1)", step_ratio.format(), ms(kd["steps"], args.steps - 2), ms(bare["steps"], args.steps - 2)],
        ["per call (set-up + N steps + validation)", call_ratio.format(), ms(kd["call"], args.steps), ms(bare["call"], args.steps)],
    ]
    table = markdown_table(
        ["ratio kdbench / bare", "min / median / max", "kdbench ms/step (median)", "bare ms/step (median)"], rows
    )
    print(table)
    body = "\n\n".join([
        provenance(),
        f"Student of the `{args.pair}` pair, batch {settings['batch_size']}, "
        f"{settings['crop_seconds']} s crops, Adam lr {settings['lr']}, magnitude-L1, "
        f"{args.threads} torch thread(s), N = {args.steps} steps, {args.repeats} repeats "
        f"(`quick` preset: grad_clip {settings['grad_clip']}, valid_every {settings['valid_every']}).",
        table,
        f"Target ≤ {TARGET} per step: {verdict(step_ratio.median, TARGET)}. "
        f"Per call: {verdict(call_ratio.median, TARGET)}.",
    ])
    update_section("1. Training step: `train()` vs a bare loop", "bench_trainer", body)


if __name__ == "__main__":
    main()
