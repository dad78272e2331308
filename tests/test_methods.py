"""One training step of every registered method on CPU."""

import math

import pytest
import torch

from clcc.methods import METHODS, build_method

SIZE = 64
WIDTHS = (4, 8, 16, 32, 64)
PARAMS = {"clcc": {"n": 4}}


def _batch():
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(2, 3, SIZE, SIZE, generator=g),
        "mask": (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.5).float(),
        "image_u": torch.randn(2, 3, SIZE, SIZE, generator=g),
    }


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("progress", [0.1, 0.9])
def test_one_step_gives_finite_loss_and_backbone_gradients(name, progress):
    torch.manual_seed(0)
    method = build_method(name, SIZE, PARAMS.get(name), widths=WIDTHS)
    loss, logs = method.training_step(_batch(), progress)
    assert math.isfinite(loss.item()) and all(torch.isfinite(v).all() for v in logs.values())
    loss.backward()
    first_conv = method.model.encoder[0][0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


def test_unknown_method_lists_the_choices():
    from clcc.errors import ClccError

    with pytest.raises(ClccError, match="unknown method 'fixmatch'; choose one of .*clcc"):
        build_method("fixmatch", SIZE)
