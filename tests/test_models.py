import pytest
import torch

from clcc.models.heads import ProjectionHead, derive_strides
from clcc.models.unet import UNet


def test_unet_named_outputs_and_shapes():
    out = UNet(widths=(8, 16, 32))(torch.randn(2, 3, 32, 48))
    assert out.logits.shape == (2, 1, 32, 48)
    assert out.features.shape == (2, 8, 32, 48)


def test_unet_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match="divisible by 16"):
        UNet()(torch.randn(1, 3, 40, 40))


@pytest.mark.parametrize("patch,strides", [(64, [4, 4, 4]), (32, [4, 4, 2]), (48, [4, 4, 3])])
def test_derived_strides(patch, strides):
    assert derive_strides(patch) == strides


@pytest.mark.parametrize("size,n", [(320, 5), (128, 4)])
def test_projection_head_gives_one_vector_per_patch(size, n):
    head = ProjectionHead(16, size // n, dim=128).eval()
    assert head(torch.randn(2, 16, size, size)).shape == (2, 128, n, n)
    assert head(torch.randn(3, 16, size // n, size // n)).shape == (3, 128, 1, 1)


def test_projection_receptive_fields_do_not_overlap():
    torch.manual_seed(0)
    head = ProjectionHead(4, 8).eval()
    features = torch.randn(1, 4, 24, 24)
    changed = features.clone()
    changed[:, :, 8:16, 16:24] += 5.0  # block (row 1, column 2)
    diff = (head(features) - head(changed)).abs().sum(1)[0]
    assert diff[1, 2] > 0
    diff[1, 2] = 0
    assert torch.all(diff == 0)
    # each vector of the full map equals the vector of its patch fed alone
    patch = features[:, :, 8:16, 0:8]
    assert torch.allclose(head(features)[:, :, 1, 0], head(patch)[:, :, 0, 0], atol=1e-6)
    assert torch.all(head(features) >= 0)  # ReLU: non-negative vectors, as in the authors' head
