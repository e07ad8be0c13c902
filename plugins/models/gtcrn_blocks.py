"""The building blocks of GTCRN (Rong et al., "GTCRN: A Speech Enhancement Model Requiring
Ultralow Computational Resources", ICASSP 2024), written from the paper's description.

Every map is (batch, channels, freq, frames), kdbench's latent layout, so the family's
latents need no transposition; kernels and strides are given as (freq, time).

Everything that looks along time is causal and takes an explicit `carry`: the frames or
recurrent state it needs from before its input. With `carry` None the input is the start
of the signal (silence before it, a zero state); with the carry a previous call returned,
the input continues that call's. Offline inference and frame-by-frame streaming therefore
run one code path, and streaming equals offline by construction.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def erb_rate(hz: float) -> float:
    """Glasberg & Moore's ERB-rate scale (1990): ERBs below `hz`."""
    return 21.4 * math.log10(1.0 + 0.00437 * hz)


def erb_rate_to_hz(rate: float) -> float:
    return (10.0 ** (rate / 21.4) - 1.0) / 0.00437


def erb_weights(bins: int, low: int, bands: int, sample_rate: int) -> torch.Tensor:
    """(bins − low, bands) triangular weights: band k peaks at a centre bin c_k, the centres
    equally spaced on the ERB-rate scale from bin `low` to the Nyquist bin; each bin is
    shared by the two bands whose centres enclose it, linearly, so a bin's weights sum to 1.

    Bins are the one-sided STFT's, at sample_rate / (2 (bins − 1)) Hz apart.
    """
    if not 0 < low < bins - 1 or bands < 2:
        raise ValueError(f"need 0 < low < {bins - 1} and at least 2 bands, got {low}, {bands}")
    bin_hz = sample_rate / (2 * (bins - 1))
    first, last = erb_rate(low * bin_hz), erb_rate(sample_rate / 2)
    centres = torch.tensor(
        [erb_rate_to_hz(first + (last - first) * k / (bands - 1)) / bin_hz for k in range(bands)],
        dtype=torch.float64,
    )
    if bool((centres.diff() < 1.0).any()):
        raise ValueError(
            f"{bands} ERB bands above bin {low} are narrower than one bin; use fewer bands"
        )
    weights = torch.zeros(bins - low, bands, dtype=torch.float64)
    for offset, position in enumerate(torch.arange(low, bins, dtype=torch.float64)):
        upper = int(torch.searchsorted(centres, position, right=True).clamp(1, bands - 1))
        span = centres[upper] - centres[upper - 1]
        share = ((position - centres[upper - 1]) / span).clamp(0.0, 1.0)
        weights[offset, upper - 1] = 1.0 - share
        weights[offset, upper] = share
    return weights.float()


class ERBBands(nn.Module):
    """Fixed band merging (bins → bands) and splitting (bands → bins).

    The `low` lowest bins pass through unchanged (by concatenation, which is what brings
    GTCRN to 33 MMAC/s rather than the 39.6 of a full matrix); the rest fold into `bands`
    ERB bands. Merging averages a band's bins (each band's weights normalised to sum to
    1, so wide high bands keep the scale of narrow low ones); splitting interpolates each
    bin from its two bands (weights summing to 1 per bin). Both are buffers, not learned.
    """

    def __init__(self, bins: int, low: int, bands: int, sample_rate: int) -> None:
        super().__init__()
        weights = erb_weights(bins, low, bands, sample_rate)
        self.low = low
        self.register_buffer("merging", weights / weights.sum(0, keepdim=True), persistent=False)
        self.register_buffer("splitting", weights.T.contiguous(), persistent=False)

    @property
    def total(self) -> int:
        return self.low + self.merging.shape[1]

    def _fold(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        low, high = x[:, :, : self.low], x[:, :, self.low :]
        high = torch.matmul(high.transpose(2, 3), matrix).transpose(2, 3)
        return torch.cat([low, high], dim=2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        return self._fold(x, self.merging)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return self._fold(x, self.splitting)


def subband_features(x: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """SFE: each band's channels joined by its neighbours' (zero beyond the edges), so the
    next 1x1 convolution sees `kernel` bands at no multiply cost. Written as shifted
    slices rather than `unfold`, which exports to ONNX as plain slices."""
    reach = kernel // 2
    padded = F.pad(x, (0, 0, reach, reach))
    bands = x.shape[2]
    return torch.cat([padded[:, :, shift : shift + bands] for shift in range(kernel)], dim=1)


class TemporalAttention(nn.Module):
    """TRA: each channel's energy per frame (mean over frequency) drives a causal GRU whose
    output gates that channel in that frame, in (0, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, 2 * channels, batch_first=True)
        self.gate = nn.Linear(2 * channels, channels)

    def forward(
        self, x: torch.Tensor, carry: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        energy = x.square().mean(dim=2).transpose(1, 2)  # (batch, frames, channels)
        hidden, carry = self.gru(energy, carry)
        gate = torch.sigmoid(self.gate(hidden)).transpose(1, 2).unsqueeze(2)
        return x * gate, carry


class GroupedTemporalConv(nn.Module):
    """GT-Conv: half the channels pass unchanged; the other half go through SFE, a 1x1
    convolution, a depthwise convolution dilated along time, a 1x1 convolution back and
    TRA; the halves are then interleaved (channel shuffle) so the next block's split mixes
    them. The depthwise convolution is causal: it reads `(kernel − 1) · dilation` past
    frames, kept in the carry when streaming."""

    def __init__(self, channels: int, hidden: int, dilation: int, kernel: int = 3) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"GT-Conv needs an even channel count, got {channels}")
        half = channels // 2
        self.context = (kernel - 1) * dilation
        self.expand = nn.Sequential(
            nn.Conv2d(3 * half, hidden, 1), nn.BatchNorm2d(hidden), nn.PReLU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(
                hidden, hidden, kernel, padding=(kernel // 2, 0), dilation=(1, dilation),
                groups=hidden,
            ),
            nn.BatchNorm2d(hidden),
            nn.PReLU(),
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, half, 1), nn.BatchNorm2d(half))
        self.attention = TemporalAttention(half)

    def forward(self, x: torch.Tensor, carry: Any) -> tuple[torch.Tensor, Any]:
        past, attention_state = carry if carry is not None else (None, None)
        active, passive = x.chunk(2, dim=1)
        h = self.expand(subband_features(active))
        extended = F.pad(h, (self.context, 0)) if past is None else torch.cat([past, h], dim=3)
        past = extended[..., -self.context :]
        h = self.project(self.depthwise(extended))
        h, attention_state = self.attention(h, attention_state)
        shuffled = torch.stack([h, passive], dim=2).flatten(1, 2)
        return shuffled, (past, attention_state)


class GroupedGRU(nn.Module):
    """Channels split into `groups` independent GRUs: `groups` times fewer weights than one
    GRU of the full width. A bidirectional one runs along frequency (within a frame), so
    it stays causal in time."""

    def __init__(
        self, input_size: int, hidden_size: int, groups: int = 2, bidirectional: bool = False
    ) -> None:
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError(f"{input_size} and {hidden_size} must divide into {groups} groups")
        self.grus = nn.ModuleList(
            nn.GRU(
                input_size // groups, hidden_size // groups, batch_first=True,
                bidirectional=bidirectional,
            )
            for _ in range(groups)
        )

    def forward(self, x: torch.Tensor, carry: Any = None) -> tuple[torch.Tensor, tuple]:
        states = carry if carry is not None else (None,) * len(self.grus)
        outputs, carried = [], []
        for gru, part, state in zip(self.grus, x.chunk(len(self.grus), dim=-1), states):
            output, state = gru(part, state)
            outputs.append(output)
            carried.append(state)
        return torch.cat(outputs, dim=-1), tuple(carried)


class DualPathGroupedRNN(nn.Module):
    """DPGRNN: a bidirectional grouped GRU along frequency within each frame, then a causal
    grouped GRU along time within each band, each followed by a linear layer, layer
    normalisation over (bands, channels) and a residual connection."""

    def __init__(self, channels: int, bands: int) -> None:
        super().__init__()
        self.intra = GroupedGRU(channels, channels // 2, bidirectional=True)
        self.intra_out = nn.Linear(channels, channels)
        self.intra_norm = nn.LayerNorm((bands, channels), eps=1e-8)
        self.inter = GroupedGRU(channels, channels)
        self.inter_out = nn.Linear(channels, channels)
        self.inter_norm = nn.LayerNorm((bands, channels), eps=1e-8)

    def forward(self, x: torch.Tensor, carry: Any) -> tuple[torch.Tensor, Any]:
        _, channels, bands, _ = x.shape
        z = x.permute(0, 3, 2, 1)  # (batch, frames, bands, channels)
        along_freq = self.intra(z.reshape(-1, bands, channels))[0]
        z = z + self.intra_norm(self.intra_out(along_freq).reshape(z.shape))
        by_band = z.transpose(1, 2)  # (batch, bands, frames, channels)
        along_time, carry = self.inter(by_band.reshape(-1, by_band.shape[2], channels), carry)
        along_time = self.inter_out(along_time).reshape(by_band.shape).transpose(1, 2)
        z = z + self.inter_norm(along_time)
        return z.permute(0, 3, 2, 1), carry
