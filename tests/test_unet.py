"""The mask UNet's floor: a minimum gain bounds how much of any bin a model may remove,
without changing a model that does not ask for one (every existing trial id and shipped
teacher depends on that)."""

from __future__ import annotations

import pytest
import torch
from kdbench_plugins.models.unet import build_unet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = {"channels": [4, 8], "kernel": 3}


def magnitude() -> torch.Tensor:
    return torch.rand(2, 1, 257, 40, generator=torch.Generator().manual_seed(0)) * 3.0


def test_the_floor_rescales_the_sigmoid_mask_into_floor_to_one() -> None:
    torch.manual_seed(0)
    plain = build_unet(SPEC).eval()
    floored = build_unet({**SPEC, "mask_floor": 0.25}).eval()
    floored.load_state_dict(plain.state_dict())
    with torch.no_grad():
        mask, plain_latents = plain.mask_network(magnitude())
        floored_mask, latents = floored.mask_network(magnitude())
    assert floored_mask.min() >= 0.25
    assert floored_mask.max() <= 1.0
    torch.testing.assert_close(floored_mask, 0.25 + 0.75 * mask)
    torch.testing.assert_close(latents["bottleneck"], plain_latents["bottleneck"])


def test_a_zero_floor_is_bit_identical_to_a_spec_without_one() -> None:
    torch.manual_seed(0)
    default = build_unet(SPEC).eval()
    torch.manual_seed(0)
    explicit = build_unet({**SPEC, "mask_floor": 0.0}).eval()
    noisy = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(default(noisy).waveform(), explicit(noisy).waveform())


@pytest.mark.parametrize("floor", [-0.1, 1.0, 1.5])
def test_a_floor_outside_zero_to_one_is_refused_naming_it(floor: float) -> None:
    with pytest.raises(ValueError, match="mask_floor must be in \\[0, 1\\)"):
        build_unet({**SPEC, "mask_floor": floor})
