"""libespeak-ng through ctypes, and the per-shard worker that runs it in a fresh process.

The library comes from the optional `espeakng-loader` package (``kdbench[espeak]``), which
ships the shared library and its data; nothing of eSpeak NG is vendored here. Run as
``python -m kdbench_plugins.datasets.espeak_engine OUT.npz`` with the shard's scripts as
JSON on stdin, it synthesises one shard; it imports only ctypes and numpy, so that process
starts in a fraction of a second.

Why every shard gets a fresh process: eSpeak NG keeps synthesis state in globals that
survive between calls, even across `espeak_Terminate` and a new `espeak_Initialize`, so
an utterance's samples depend on every synthesis before it in the same process; and its
noise generator (breathy and whispered variants) is seeded from the clock. A fresh
process replaying a fixed sequence of calls, with `espeak_ng_SetRandSeed` before each
utterance, gives the same samples on every run with the same library.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

INSTALL_HINT = "pip install 'kdbench[espeak]'"
LOADER_PACKAGE = "espeakng-loader"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _PITCH, _RANGE = 1, 3, 4
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


ShardAudio = tuple[int, list[tuple[np.ndarray, int]]]
"""The engine's sample rate and, per utterance, its int16 samples and sentences spoken."""


class EspeakUnavailable(RuntimeError):
    """The extra is not installed or its library cannot be loaded; the message says how to
    fix it. Not a kdbench error class, so the worker process never imports kdbench."""


@dataclasses.dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an English accent, a voice variant and prosody settings."""

    id: str
    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int

    @property
    def espeak_name(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclasses.dataclass(frozen=True)
class UtteranceScript:
    """What one utterance says and in which voice: sentences are spoken in order (cycling)
    until `seconds` of audio exist; `rand_seed` seeds eSpeak's noise generator."""

    voice: Voice
    sentences: tuple[str, ...]
    seconds: float
    rand_seed: int

    @classmethod
    def from_json(cls, data: dict) -> UtteranceScript:
        return cls(
            voice=Voice(**data["voice"]),
            sentences=tuple(data["sentences"]),
            seconds=float(data["seconds"]),
            rand_seed=int(data["rand_seed"]),
        )


def loader() -> ModuleType:
    """The `espeakng_loader` module, or `EspeakUnavailable` saying how to install it."""
    try:
        return importlib.import_module("espeakng_loader")
    except ImportError as exc:
        raise EspeakUnavailable(
            f"the espeak dataset needs the {LOADER_PACKAGE} package (libespeak-ng and its "
            f"data): {INSTALL_HINT}"
        ) from exc


def data_path() -> Path:
    """The espeak-ng-data folder shipped by the loader package."""
    try:
        return Path(loader().get_data_path())
    except RuntimeError as exc:
        raise EspeakUnavailable(f"{LOADER_PACKAGE} is installed without its data: {exc}") from exc


def _library() -> ctypes.CDLL:
    path = loader().get_library_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise EspeakUnavailable(
            f"{path}: cannot load libespeak-ng ({exc}); reinstall with {INSTALL_HINT}"
        ) from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    return lib


def versions() -> dict[str, str]:
    """Library and package versions: part of the corpus identity, since another eSpeak NG
    release speaks differently."""
    return {
        "libespeak-ng": _library().espeak_Info(None).decode(),
        LOADER_PACKAGE: importlib.metadata.version(LOADER_PACKAGE),
    }


def available_variants() -> frozenset[str]:
    """Names of the voice variants in the installed data (files under voices/!v)."""
    return frozenset(path.name for path in (data_path() / "voices" / "!v").iterdir())


class _Engine:
    """An initialised library in synchronous mode, collecting the callback's int16 samples."""

    def __init__(self) -> None:
        self.lib = _library()
        self.rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), _INITIALIZE_DONT_EXIT
        )
        if self.rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed with data at {data_path()}")
        self.chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # referenced, so never collected
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples: ctypes.Array, count: int, _events: int) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 0

    def set_voice(self, voice: Voice) -> None:
        if self.lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != _EE_OK:
            raise ValueError(f"eSpeak NG has no voice {voice.espeak_name!r}")
        for parameter, value in ((_RATE, voice.rate), (_PITCH, voice.pitch),
                                 (_RANGE, voice.pitch_range)):
            self.lib.espeak_SetParameter(parameter, value, 0)

    def say(self, text: str) -> np.ndarray:
        self.chunks = []
        data = text.encode() + b"\0"
        status = self.lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


def synthesize_shard(scripts: list[UtteranceScript]) -> ShardAudio:
    """Every utterance of a shard, in order. Reproducible only as the first synthesis of a
    fresh process (see above)."""
    engine = _Engine()
    out = []
    for script in scripts:
        engine.set_voice(script.voice)
        engine.lib.espeak_ng_SetRandSeed(script.rand_seed)
        needed = script.seconds * engine.rate
        pieces: list[np.ndarray] = []
        while sum(map(len, pieces)) < needed:
            if len(pieces) == len(script.sentences) and not any(map(len, pieces)):
                raise RuntimeError(f"eSpeak NG produced no audio in voice {script.voice.id}")
            pieces.append(engine.say(script.sentences[len(pieces) % len(script.sentences)]))
        out.append((np.concatenate(pieces), len(pieces)))
    return engine.rate, out


def main(argv: list[str]) -> None:
    """Synthesise the shard read from stdin into the npz file `argv[1]`: `rate`, `spoken`
    (sentences per utterance) and one int16 array `u<k>` per utterance."""
    scripts = [UtteranceScript.from_json(item) for item in json.load(sys.stdin)]
    rate, results = synthesize_shard(scripts)
    arrays = {f"u{k}": samples for k, (samples, _) in enumerate(results)}
    np.savez(argv[1], rate=rate, spoken=np.array([spoken for _, spoken in results]), **arrays)


if __name__ == "__main__":
    main(sys.argv)
