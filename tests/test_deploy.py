"""Deployment: denoising files with a really trained tiny student, ONNX export parity,
exact streaming, refusing pickled code, and the `denoise`/`export` commands."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from click.testing import CliRunner
from kdbench_plugins.metrics.sdr_metrics import si_sdr
from signals import speech_like, white_noise_at_snr
from stores import a_student

from kdbench.api import ModelSpec, Utterance
from kdbench.cli import main
from kdbench.deploy import denoise as deploy
from kdbench.deploy.checkpoints import build_from_checkpoint, load_checkpoint, save_checkpoint
from kdbench.deploy.streaming import StreamingDenoiser, stream_denoise, time_reach
from kdbench.errors import KdbenchError
from kdbench.plugin.registry import get_registry
from kdbench.run.evaluate import Score
from kdbench.run.store import Store
from kdbench.run.trial import Outcome
from kdbench.train.trainer import train

RATE = 16000
SPEC = ModelSpec("unet", {"channels": [4, 8]})
STREAM_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
NO_ONNX = "onnxruntime missing: pip install 'kdbench[onnx]'"
SETTINGS = {
    "steps": 150,
    "task_loss": "magnitude_l1",
    "crop_seconds": 0.5,
    "crop_grid_seconds": 0.25,
    "batch_size": 4,
    "lr": 0.005,
    "checkpoint": "last",
    "valid_every": 150,
    "grad_clip": 0.0,
}


def noisy_pair(seconds: float, seed: int, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    clean = speech_like(seconds, RATE, seed=seed)
    noisy, _ = white_noise_at_snr(clean, snr_db, seed=seed + 100)
    return clean.astype(np.float32), noisy.astype(np.float32)


def utterances(seeds: range) -> list[Utterance]:
    items = []
    for seed in seeds:
        clean, noisy = noisy_pair(1.5, seed, snr_db=float(seed % 6))
        items.append(Utterance(f"u{seed}", clean, noisy))
    return items


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> deploy.Student:
    """A tiny UNet student really trained for 150 steps, saved and reloaded from disk."""
    torch.manual_seed(0)
    model = get_registry().get("models", "unet").build(SPEC.params)
    train(model, utterances(range(6)), utterances(range(6, 7)), SETTINGS, seed=0, sample_rate=RATE)
    path = tmp_path_factory.mktemp("student") / "student.pt"
    save_checkpoint(path, SPEC, model, {"trial": "handmade", "sample_rate": RATE})
    return deploy.load_student(path)


def write_48k_stereo(path: Path, audio: np.ndarray) -> np.ndarray:
    """Upsample 16 kHz audio to 48 kHz and write it as two identical channels."""
    upsampled = AF.resample(torch.from_numpy(audio), RATE, 48000).numpy()
    sf.write(path, np.stack([upsampled, upsampled], axis=1), 48000, subtype="FLOAT")
    return upsampled


# --------------------------------------------------------------------------- files


def test_denoise_file_improves_si_sdr_and_writes_at_input_rate(
    trained: deploy.Student, tmp_path: Path
) -> None:
    clean, noisy = noisy_pair(2.0, seed=42, snr_db=2.5)
    clean_48k = AF.resample(torch.from_numpy(clean), RATE, 48000).numpy()
    noisy_48k = write_48k_stereo(tmp_path / "in.wav", noisy)

    deploy.denoise_file(trained, tmp_path / "in.wav", tmp_path / "out.wav", subtype="float")

    estimate, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 48000 and estimate.ndim == 1 and len(estimate) == len(noisy_48k)
    gain = si_sdr(clean_48k, estimate) - si_sdr(clean_48k, noisy_48k)
    assert gain > 3.0, f"SI-SDR gain only {gain:.2f} dB"


def test_refuses_to_overwrite_input(trained: deploy.Student, tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    write_48k_stereo(source, noisy_pair(0.5, seed=1, snr_db=5)[1])
    before = source.read_bytes()
    for target in (source, tmp_path / "sub" / ".." / "in.wav"):
        with pytest.raises(KdbenchError, match="refusing to overwrite"):
            deploy.denoise_file(trained, source, target)
    with pytest.raises(KdbenchError, match="input folder"):
        deploy.denoise_folder(trained, tmp_path, tmp_path, progress=False)
    assert source.read_bytes() == before


def test_unreadable_input_is_named(trained: deploy.Student, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really a wave file")
    with pytest.raises(KdbenchError, match="broken.wav"):
        deploy.denoise_file(trained, broken, tmp_path / "out.wav")
    with pytest.raises(KdbenchError, match="missing.wav"):
        deploy.denoise_file(trained, tmp_path / "missing.wav", tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()


def test_folder_mirrors_names_and_skips_its_own_output(
    trained: deploy.Student, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.WAV"):
        write_48k_stereo(source / name, noisy_pair(0.5, seed=3, snr_db=5)[1])
    (source / "notes.txt").write_text("not audio")
    target = source / "denoised"
    first = deploy.denoise_folder(trained, source, target, progress=False)
    again = deploy.denoise_folder(trained, source, target, progress=False)
    assert first == again == [target / "a.wav", target / "sub" / "b.WAV"]
    assert sf.info(str(target / "sub" / "b.WAV")).samplerate == 48000


# --------------------------------------------------------------------------- checkpoints


class _RunsCode:
    """Unpickling this calls `Path.write_text` (i.e. runs code) via __reduce__."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"format": "kdbench-checkpoint", "state_dict": {}, "meta": _RunsCode(marker)}, path)
    for load in (load_checkpoint, lambda p: build_from_checkpoint(p, get_registry())):
        with pytest.raises(KdbenchError, match="refused.*pickled code"):
            load(path)
    with pytest.raises(KdbenchError, match="evil.pt"):
        deploy.load_student(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- ONNX


def test_onnx_matches_pytorch_and_sidecar_is_enough_to_run_it(
    trained: deploy.Student, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime", reason=NO_ONNX)
    from kdbench.deploy.onnx import export_onnx

    sidecar = export_onnx(trained.model, tmp_path / "student.onnx", RATE, spec=SPEC.to_json())
    assert sidecar["parity"]["estimate_max_abs_error"] <= ONNX_TOLERANCE
    assert json.loads((tmp_path / "student.json").read_text()) == sidecar

    # Rebuild the whole denoiser from the sidecar's words and the graph alone.
    stft = sidecar["stft"]
    window = torch.hann_window(stft["win_length"], periodic=stft["window_periodic"])
    noisy = torch.from_numpy(noisy_pair(1.7, seed=9, snr_db=0)[1])[None]
    spec = torch.stft(
        noisy, stft["n_fft"], stft["hop"], window=window, center=stft["center"],
        pad_mode=stft["pad_mode"], return_complex=True,
    )
    session = ort.InferenceSession(
        str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"]
    )
    assert stft["window"] == "hann"
    channels = torch.stack([spec.real, spec.imag], dim=1).numpy()
    estimate = torch.from_numpy(session.run(["estimate"], {"spectrum": channels})[0])
    rebuilt = torch.istft(
        torch.complex(estimate[:, 0], estimate[:, 1]), stft["n_fft"], stft["hop"],
        window=window, center=stft["center"], length=noisy.shape[-1],
    )
    with torch.inference_mode():
        reference = trained.model.denoise(noisy)
    assert float((rebuilt - reference).abs().max()) <= ONNX_TOLERANCE


def test_export_without_onnx_says_how_to_install(
    trained: deploy.Student, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdbench.deploy.onnx import export_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(KdbenchError, match=re.escape("pip install 'kdbench[onnx]'")):
        export_onnx(trained.model, tmp_path / "student.onnx", RATE)
    assert not (tmp_path / "student.onnx").exists()


# --------------------------------------------------------------------------- streaming


def test_time_reach_is_the_measured_receptive_field() -> None:
    """Perturbing one input frame changes mask frames exactly up to `reach` away."""
    torch.manual_seed(0)
    model = get_registry().get("models", "unet").build({"channels": [4, 8, 8], "kernel": 3}).eval()
    reach = time_reach(model)
    assert (reach.past, reach.future, reach.period) == (14, 2 * 1 * (2**3 - 1), 8)
    magnitude = torch.rand(1, 1, 33, 96)
    furthest = 0
    with torch.no_grad():
        base = model.mask_network(magnitude)[0]
        for frame in range(40, 40 + reach.period):
            bumped = magnitude.clone()
            bumped[..., frame] += 5.0
            difference = (model.mask_network(bumped)[0] - base).abs().amax((0, 1, 2))
            changed = torch.nonzero(difference > 0)
            furthest = max(furthest, int((changed - frame).abs().max()))
    assert furthest == reach.future


@pytest.mark.parametrize(("chunk", "block"), [(128, None), (100, 1), (1000, 3)])
def test_streaming_matches_offline(trained: deploy.Student, chunk: int, block: int | None) -> None:
    noisy = noisy_pair(1.3, seed=5, snr_db=3)[1][:20_807]
    with torch.inference_mode():
        offline = trained.model.denoise(torch.from_numpy(noisy)[None])[0].numpy()
    streamed = stream_denoise(trained.model, noisy, chunk=chunk, block=block)
    assert streamed.shape == offline.shape
    assert float(np.abs(streamed - offline).max()) <= STREAM_TOLERANCE


def test_short_lookahead_is_not_claimed_exact(trained: deploy.Student) -> None:
    noisy = noisy_pair(1.0, seed=6, snr_db=3)[1]
    with torch.inference_mode():
        offline = trained.model.denoise(torch.from_numpy(noisy)[None])[0].numpy()
    streamer = StreamingDenoiser(trained.model, lookahead=0)
    assert not streamer.exact
    assert float(np.abs(stream_denoise(trained.model, noisy, lookahead=0) - offline).max()) > 1e-4


def test_streaming_latency_is_as_stated(trained: deploy.Student) -> None:
    """Each output sample appears exactly `latency_samples` input samples after its own
    input sample, in the worst case, when fed one hop at a time."""
    streamer = StreamingDenoiser(trained.model)
    hop = trained.model.hop
    noisy = noisy_pair(1.0, seed=8, snr_db=3)[1]
    emitted, worst = 0, 0
    for at in range(0, len(noisy), hop):
        received = min(at + hop, len(noisy))
        out = streamer.push(noisy[at : at + hop])
        for index in range(emitted, emitted + len(out)):
            if index >= trained.model.n_fft:  # the reflected start needs less lookahead
                worst = max(worst, received - (index + 1))
        emitted += len(out)
    assert worst == streamer.latency_samples()
    assert math.isclose(streamer.latency_ms(RATE), 1000 * (512 - 1 + (12 + 4 - 1) * 128) / RATE)


# --------------------------------------------------------------------------- store & CLI


def _record(
    store: Store, results: Path, trial_id: str, si_sdrs: list[float], status: str = "done"
) -> None:
    trial = a_student(
        trial_id, dataset="procedural", dataset_params={"sample_rate": RATE},
        dataset_identity="ds1", results_dir=str(results), metrics=("si_sdr",),
        pair="tiny", method="cosine", seed=len(si_sdrs),
    )
    scores = [Score(f"u{i}", "si_sdr", value, None) for i, value in enumerate(si_sdrs)]
    store.record(Outcome(trial, status, scores=scores))


@pytest.fixture
def results(trained: deploy.Student, tmp_path: Path) -> Path:
    """A store with two done students (the second better on si_sdr) and a failed one."""
    path = tmp_path / "results" / "results.db"
    store = Store(path)
    for trial_id, values in (("abc111", [5.0, 6.0]), ("abc222", [7.0, float("nan"), 8.0])):
        _record(store, path.parent, trial_id, values)
        save_checkpoint(
            path.parent / "students" / f"{trial_id}.pt", SPEC, trained.model, {"trial": trial_id}
        )
    _record(store, path.parent, "fff000", [9.0], status="failed")
    store.close()
    return path


def test_locating_students(results: Path) -> None:
    store = Store(results)
    assert deploy.find_trial(store, "abc1").trial_id == "abc111"
    assert deploy.best(store, "tiny", "cosine").trial_id == "abc222"
    with pytest.raises(KdbenchError, match="ambiguous"):
        deploy.find_trial(store, "abc")
    with pytest.raises(KdbenchError, match="failed, not done"):
        deploy.find_trial(store, "fff")
    with pytest.raises(KdbenchError, match="no done student"):
        deploy.best(store, "tiny", "fgspkd")
    (results.parent / "students" / "abc111.pt").unlink()
    with pytest.raises(KdbenchError, match="checkpoint .* is missing"):
        deploy.find_trial(store, "abc111")
    store.close()


def test_cli_denoise_and_export(results: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    source = tmp_path / "in.wav"
    write_48k_stereo(source, noisy_pair(0.8, seed=4, snr_db=2)[1])

    store = ["--results", str(results)]
    by_id = runner.invoke(
        main, ["denoise", str(source), str(tmp_path / "a.wav"), "--trial", "abc1", *store]
    )
    assert by_id.exit_code == 0, by_id.output
    assert sf.info(str(tmp_path / "a.wav")).samplerate == 48000

    by_best = runner.invoke(
        main,
        ["denoise", str(source), str(tmp_path / "b.wav"), "--best", "--pair", "tiny",
         "--method", "cosine"]
        + store,
    )
    assert by_best.exit_code == 0, by_best.output
    assert "abc222" in by_best.stderr

    ambiguous = runner.invoke(
        main, ["denoise", str(source), str(tmp_path / "c.wav"), "--trial", "abc", *store]
    )
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.stderr

    same = runner.invoke(main, ["denoise", str(source), str(source), "--trial", "abc1", *store])
    assert same.exit_code == 2 and "refusing to overwrite" in same.stderr

    (tmp_path / "folder").mkdir()
    source.rename(tmp_path / "folder" / "x.wav")
    folder = runner.invoke(
        main,
        ["denoise", str(tmp_path / "folder"), str(tmp_path / "clean"), "--trial", "abc1", *store],
    )
    assert folder.exit_code == 0, folder.output
    assert (tmp_path / "clean" / "x.wav").is_file()

    pytest.importorskip("onnxruntime", reason=NO_ONNX)
    exported = runner.invoke(
        main,
        ["export", "--trial", "abc222", "--format", "onnx", str(tmp_path / "s.onnx"), *store],
    )
    assert exported.exit_code == 0, exported.output
    assert "latency 151.9 ms" in exported.stdout
    sidecar = json.loads((tmp_path / "s.json").read_text())
    assert sidecar["trial"] == "abc222" and sidecar["stft"]["sample_rate"] == RATE
