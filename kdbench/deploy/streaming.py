"""Frame-by-frame denoising with any `Denoiser` that implements `enhance`, reproducing
offline inference.

Two kinds of network are streamed, as their `time_reach` says:

- A network with a bounded reach (the UNet). Its convolutions are non-causal along time:
  every strided encoder conv and every transposed decoder conv looks at frames on both
  sides, so an output frame depends on input frames up to `reach` frames into the future
  and the past, where, for kernels of half-width p at D stride-2 levels,
  reach = 2·p·(2^D − 1) (the encoder cone plus the decoder cone, both p·(2^D − 1)). The
  strides also make the network periodic rather than shift-invariant: it computes the same
  function only on windows that start on a multiple of 2^D frames. So the streamer keeps
  the frames it has seen, and whenever `block` new frames have `lookahead` frames after
  them it runs `enhance` on a window that starts on the stride grid at least `past` frames
  before them and emits exactly those frames.
- A causal recurrent network (GTCRN): `past` is None, because a recurrent state carries
  the whole past. Each block of new frames is fed once, with the state the previous block
  returned, and no lookahead is needed (`future` must be 0).

With the default `lookahead = future` every emitted frame has the same dependency cone as
offline, so the output equals offline `model.denoise` up to float32 summation order
(tested to 1e-5 absolute on signals within [-1, 1]). The STFT (centred, reflect-padded at
both ends, the model's own window) and the overlap-add with window-envelope normalisation
are done incrementally in the same way `torch.stft`/`torch.istft` do them, so the first and
last samples match too once `flush()` is called. A smaller `lookahead` lowers latency but
cuts cones short: the result then differs from offline (by how much depends on the
model), and no exactness is claimed.

Latency, from an input sample's arrival to its output, worst case over samples:
``n_fft − 1 + (lookahead + block − 1) · hop`` samples — half a window to complete the
sample's last frame, `lookahead` frames, waiting for a block to fill, and half a window
of overlap-add. Compute: a bounded-reach network re-runs on about `block + 2·reach` frames
per block, i.e. (block + 2·reach) / block times the offline cost (a larger block trades
latency for throughput); a recurrent one runs on each frame once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdbench.api import Denoiser, TimeReach
from kdbench.errors import KdbenchError


def time_reach(model: Denoiser) -> TimeReach:
    """The model's receptive field along time, as its family declares it."""
    try:
        reach = model.time_reach()
    except NotImplementedError:
        raise KdbenchError(
            f"{type(model).__name__} does not declare its receptive field along time "
            "(Denoiser.time_reach), so it cannot be streamed exactly"
        ) from None
    if reach.past is None and reach.future != 0:
        raise KdbenchError(
            f"{type(model).__name__} carries a recurrent state but looks {reach.future} "
            "frame(s) ahead: a block fed into the state cannot be fed again, so it cannot "
            "be streamed exactly"
        )
    return reach


def _enhance(model: Denoiser, spectra: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """`model.enhance` on complex (freq, frames) spectra; a family without it is named."""
    noisy = torch.stack([spectra.real, spectra.imag])[None]
    try:
        estimate, state = model.enhance(noisy, state)
    except NotImplementedError:
        raise KdbenchError(
            f"{type(model).__name__} does not implement Denoiser.enhance (the network on "
            "STFT frames), so it cannot be streamed or exported"
        ) from None
    return torch.complex(estimate[0, 0], estimate[0, 1]), state


def latency_samples(n_fft: int, hop: int, lookahead: int, block: int) -> int:
    """Worst-case samples between an input sample's arrival and its output (see module doc)."""
    return n_fft - 1 + (lookahead + block - 1) * hop


class StreamingDenoiser:
    """Feed audio in chunks of any size with `push`, get finished samples back; `flush`
    at the end returns the rest. Concatenated, the outputs have the input's length.
    """

    def __init__(
        self, model: Denoiser, lookahead: int | None = None, block: int | None = None
    ) -> None:
        reach = time_reach(model)
        self.model = model.eval()
        self.reach = reach
        self.recurrent = reach.past is None
        self.lookahead = reach.future if lookahead is None else int(lookahead)
        self.block = reach.period if block is None else int(block)
        if self.lookahead < 0 or self.block < 1:
            raise KdbenchError(f"need lookahead >= 0 and block >= 1, got {lookahead}, {block}")
        if self.recurrent and self.lookahead:
            raise KdbenchError(
                f"{type(model).__name__} is causal and recurrent: it streams without "
                f"lookahead, got {lookahead}"
            )
        self.n_fft, self.hop = model.n_fft, model.hop
        self.half = self.n_fft // 2
        self.device = model.device  # the stream's state lives where the model runs
        self.window = model.window.detach()
        self.exact = self.lookahead >= reach.future
        self._state: Any = None
        self._pending: list[torch.Tensor] = []
        self._padded = torch.zeros(0, device=self.device)
        self._padded_origin = 0
        self._received = 0
        self._spectra: list[torch.Tensor] = []
        self._spectra_origin = 0
        self._enhanced = 0
        self._numerator = torch.zeros(0, device=self.device)
        self._envelope = torch.zeros(0, device=self.device)
        self._ola_origin = 0
        self._emitted = 0
        self._finished = False
        self._started = False

    def latency_samples(self) -> int:
        return latency_samples(self.n_fft, self.hop, self.lookahead, self.block)

    def latency_ms(self, sample_rate: int) -> float:
        return 1000.0 * self.latency_samples() / sample_rate

    def push(self, chunk: np.ndarray | torch.Tensor) -> np.ndarray:
        """Take more mono samples; return the output samples that are now final."""
        if self._finished:
            raise KdbenchError("stream already flushed; start a new StreamingDenoiser")
        if not isinstance(chunk, torch.Tensor):
            chunk = torch.from_numpy(np.asarray(chunk, dtype=np.float32))
        samples = chunk.to(self.device, torch.float32).reshape(-1)
        self._received += samples.numel()
        if not self._started:
            # centre=True reflects the start about sample 0, so it needs samples 0..n_fft/2.
            self._pending.append(samples)
            if self._received <= self.half:
                return np.zeros(0, dtype=np.float32)
            samples = torch.cat(self._pending)
            samples = torch.cat([samples[1 : self.half + 1].flip(0), samples])
            self._pending, self._started = [], True
        self._padded = torch.cat([self._padded, samples])
        self._analyse()
        self._enhance(final=False)
        return self._emit(self._enhanced * self.hop - self.half)

    def flush(self) -> np.ndarray:
        """End the stream: reflect-pad the end as torch.stft does and emit everything left."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        length = self._received
        if length <= self.half:
            raise KdbenchError(
                f"stream of {length} samples is too short: at least {self.half + 1} needed"
            )
        tail = self._padded[-self.half - 1 : -1].flip(0)
        self._padded = torch.cat([self._padded, tail])
        self._analyse()
        self._enhance(final=True)
        return self._emit(length)

    def _analyse(self) -> None:
        """Turn every complete frame of the padded signal into a spectrum."""
        while True:
            frame = len(self._spectra) + self._spectra_origin
            start = frame * self.hop - self._padded_origin
            if start + self.n_fft > self._padded.numel():
                break
            segment = self._padded[start : start + self.n_fft]
            self._spectra.append(torch.fft.rfft(segment * self.window))
        keep_from = min(
            (len(self._spectra) + self._spectra_origin) * self.hop - self._padded_origin,
            self._padded.numel() - self.half - 1,
        )
        if keep_from > 0:
            self._padded = self._padded[keep_from:]
            self._padded_origin += keep_from

    def _window_start(self, first: int) -> int:
        """The first frame a block starting at `first` is computed from: the block itself
        for a recurrent network (its state holds the rest), else `past` frames earlier,
        rounded down to the stride grid."""
        if self.recurrent:
            return first
        past, period = self.reach.past, self.reach.period
        return max(0, (first - past) // period * period)

    def _enhance(self, final: bool) -> None:
        """Enhance every block whose lookahead is available (all frames when `final`)."""
        available = self._spectra_origin + len(self._spectra)
        while self._enhanced < available:
            first = self._enhanced
            stop = available if final else first + self.block
            if not final and stop + self.lookahead > available:
                break
            start = self._window_start(first)
            end = available if final else stop + self.lookahead
            origin = self._spectra_origin
            window = torch.stack(self._spectra[start - origin : end - origin], -1)
            with torch.inference_mode():
                estimate, state = _enhance(self.model, window, self._state)
            if self.recurrent:
                self._state = state
            offset = first - start
            self._overlap_add(first, estimate[:, offset : offset + stop - first])
            self._enhanced = stop
            self._drop_spectra()

    def _overlap_add(self, first: int, spectra: torch.Tensor) -> None:
        frames = torch.fft.irfft(spectra, n=self.n_fft, dim=0) * self.window[:, None]
        end = (first + spectra.shape[1] - 1) * self.hop + self.n_fft - self._ola_origin
        if end > self._numerator.numel():
            grow = end - self._numerator.numel()
            self._numerator = torch.cat([self._numerator, torch.zeros(grow, device=self.device)])
            self._envelope = torch.cat([self._envelope, torch.zeros(grow, device=self.device)])
        squared = self.window.square()
        for index in range(spectra.shape[1]):
            at = (first + index) * self.hop - self._ola_origin
            self._numerator[at : at + self.n_fft] += frames[:, index]
            self._envelope[at : at + self.n_fft] += squared

    def _drop_spectra(self) -> None:
        """Forget frames no future window can start at or before."""
        oldest = self._window_start(self._enhanced)
        drop = oldest - self._spectra_origin
        if drop > 0:
            del self._spectra[:drop]
            self._spectra_origin = oldest

    def _emit(self, upto: int) -> np.ndarray:
        """Normalise and return original samples [emitted, upto) of the overlap-add."""
        if upto <= self._emitted:
            return np.zeros(0, dtype=np.float32)
        lo = self._emitted + self.half - self._ola_origin
        hi = upto + self.half - self._ola_origin
        envelope = self._envelope[lo:hi]
        if bool((envelope < 1e-11).any()):
            raise KdbenchError("window envelope vanished: n_fft/hop do not overlap-add")
        out = self._numerator[lo:hi] / envelope
        self._numerator = self._numerator[hi:]
        self._envelope = self._envelope[hi:]
        self._ola_origin += hi
        self._emitted = upto
        return out.cpu().numpy().copy()


def stream_denoise(
    model: Denoiser,
    audio: np.ndarray,
    chunk: int | None = None,
    lookahead: int | None = None,
    block: int | None = None,
) -> np.ndarray:
    """Denoise `audio` by pushing `chunk`-sized pieces (default: one hop) through a stream."""
    streamer = StreamingDenoiser(model, lookahead=lookahead, block=block)
    size = chunk or model.hop
    pieces = [streamer.push(audio[at : at + size]) for at in range(0, len(audio), size)]
    pieces.append(streamer.flush())
    return np.concatenate(pieces)
