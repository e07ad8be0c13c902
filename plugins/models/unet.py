"""The mask UNet of the paper's house style, sized by width, depth and kernel.

Encoder: strided Conv2d blocks (stride 2, BatchNorm, LeakyReLU 0.2), one per entry of
`channels`. Decoder: ConvTranspose2d blocks with concatenated skips, BatchNorm, ReLU and
optional Dropout2d in the first three (the paper's 0.5; CPU presets use 0 because tiny
students trained for a few hundred steps only lose from it). A sigmoid mask multiplies the
noisy magnitude; `mask_floor` lifts it into [floor, 1], a limit on how much of any bin the
model may remove (0, the default, leaves the plain sigmoid and every existing spec's
numbers). The input is log1p-compressed so that BatchNorm sees a sane dynamic range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kdbench.api import MaskDenoiser, ModelFamily, TimeReach, hookimpl

DEFAULTS: dict[str, Any] = {
    "channels": [16, 32, 64, 128],
    "kernel": 5,
    "dropout": 0.0,
    "mask_floor": 0.0,
    "n_fft": 512,
    "hop": 128,
}


def _encoder_block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    )


def _decoder_block(cin: int, cout: int, kernel: int, dropout: float, last: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=kernel // 2, output_padding=1)
    ]
    if not last:
        layers += [nn.BatchNorm2d(cout), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


def _time_extent(conv: nn.Module) -> tuple[int, int]:
    """(frames reached on the wider side, time stride) of one conv, in its own grid."""
    kernel, stride, padding = conv.kernel_size[-1], conv.stride[-1], conv.padding[-1]
    return max(padding, kernel - 1 - padding), stride


class UNet(MaskDenoiser):
    """Latents: ``enc1..encN`` (encoder outputs), ``bottleneck`` (the deepest encoder
    output, the paper's distillation point) and ``dec1..dec{N-1}`` (decoder outputs in
    processing order, deepest first)."""

    def __init__(
        self,
        channels: Sequence[int],
        kernel: int,
        dropout: float = 0.0,
        mask_floor: float = 0.0,
        n_fft: int = 512,
        hop: int = 128,
    ) -> None:
        super().__init__(n_fft=n_fft, hop=hop)
        if kernel % 2 == 0 or kernel < 1:
            raise ValueError(f"unet kernel must be odd and positive, got {kernel}")
        if not 0.0 <= mask_floor < 1.0:
            raise ValueError(f"unet mask_floor must be in [0, 1), got {mask_floor}")
        self.mask_floor = float(mask_floor)
        channels = list(channels)
        inputs = [1, *channels[:-1]]
        self.encoder = nn.ModuleList(
            _encoder_block(cin, cout, kernel) for cin, cout in zip(inputs, channels)
        )
        depth = len(channels)
        self.decoder = nn.ModuleList()
        for level in range(depth):
            cin = channels[-1] if level == 0 else 2 * channels[depth - 1 - level]
            cout = 1 if level == depth - 1 else channels[depth - 2 - level]
            self.decoder.append(
                _decoder_block(cin, cout, kernel, dropout if level < 3 else 0.0, level == depth - 1)
            )

    def time_reach(self) -> TimeReach:
        """Symmetric: encoder level d sees `extent` frames of level d−1 on each side, i.e.
        extent·2^(d−1) input frames; a decoder level mapping grid 2^d to 2^(d−1) adds
        extent·2^(d−1) frames. The deepest path (down to the bottleneck and back up)
        bounds every skip path."""
        frames, scale = 0, 1
        for block in self.encoder:
            extent, stride = _time_extent(block[0])
            frames += extent * scale
            scale *= stride
        period = scale
        for block in self.decoder:
            extent, stride = _time_extent(block[0])
            scale //= stride
            frames += extent * scale
        return TimeReach(past=frames, future=frames, period=period)

    def _encode(self, magnitude: torch.Tensor, levels: int) -> dict[str, torch.Tensor]:
        """The first `levels` encoder latents (and the bottleneck once all are run)."""
        latents: dict[str, torch.Tensor] = {}
        x = torch.log1p(magnitude)
        for index, block in enumerate(self.encoder[:levels], start=1):
            x = block(x)
            latents[f"enc{index}"] = x
        if levels == len(self.encoder):
            latents["bottleneck"] = x
        return latents

    def forward_to(self, noisy: torch.Tensor, names: frozenset[str]) -> dict[str, torch.Tensor]:
        """Encoder latents without the decoder: the same operations on the same inputs as
        `forward` up to the deepest level asked for, hence the same bits."""
        depth = len(self.encoder)
        level_of = {f"enc{index}": index for index in range(1, depth + 1)}
        level_of["bottleneck"] = depth
        if not names or not names <= level_of.keys():
            return super().forward_to(noisy, names)
        magnitude = self.analyse(noisy)[1]
        latents = self._encode(magnitude, max(level_of[name] for name in names))
        return {name: latents[name] for name in names}

    def mask_network(
        self, magnitude: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        latents = self._encode(magnitude, len(self.encoder))
        skips = [latents[f"enc{index}"] for index in range(1, len(self.encoder) + 1)]
        x = latents["bottleneck"]
        targets = [magnitude, *skips[:-1]]
        for level, block in enumerate(self.decoder):
            target = targets[len(targets) - 1 - level]
            if level > 0:
                x = torch.cat([x, skips[len(skips) - 1 - level]], dim=1)
            x = block(x)[..., : target.shape[-2], : target.shape[-1]]
            if level < len(self.decoder) - 1:
                latents[f"dec{level + 1}"] = x
        return self.mask_floor + (1.0 - self.mask_floor) * torch.sigmoid(x), latents


def build_unet(params: Mapping[str, Any]) -> UNet:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown unet parameter(s) {sorted(unknown)}; allowed: {sorted(DEFAULTS)}")
    return UNet(**{**DEFAULTS, **params})


@hookimpl
def kdbench_register_models(register) -> None:
    register.add(
        ModelFamily(
            name="unet",
            description="STFT-mask UNet: strided conv encoder, skip-connected decoder",
            build=build_unet,
        )
    )
