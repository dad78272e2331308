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


def _count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


def test_the_authors_unet_is_theirs():
    """utils/models/utils_unet.py + unet2d.py of ShinkaiZ/CLCC-semi at 16…256: BatchNorm in the
    encoder only, ReLU, biased convolutions, kernel-4 transposed convolutions, 2.47 M weights."""
    net = UNet(architecture="authors")
    assert sum(p.numel() for p in net.parameters()) == 2_465_329
    assert _count(net.encoder, torch.nn.BatchNorm2d) == 10
    assert _count(net.decoder, torch.nn.BatchNorm2d) == 0
    assert _count(net, torch.nn.LeakyReLU) == 0 and _count(net, torch.nn.ReLU) == 18
    assert all(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert {m.kernel_size for m in net.decoder.modules()
            if isinstance(m, torch.nn.ConvTranspose2d)} == {(4, 4)}
    bn = net.encoder[0][1]
    assert torch.all(bn.bias == 0) and 0.9 < bn.weight.mean() < 1.1 and bn.weight.std() > 0
    assert net(torch.randn(1, 3, 64, 64)).logits.shape == (1, 1, 64, 64)


def test_the_ssl4mis_unet_stays_as_it_was():
    net = UNet(architecture="ssl4mis")
    assert sum(p.numel() for p in net.parameters()) == 1_942_577
    assert _count(net.decoder, torch.nn.BatchNorm2d) == 8
    assert "encoder.0.4.weight" in net.state_dict()  # checkpoints made before still load


def test_kaiming_fan_in_initialisation():
    torch.manual_seed(0)
    conv = UNet(widths=(16, 32, 64, 128, 256), architecture="authors").encoder[3][0]
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)


def test_the_projection_head_sees_one_64_pixel_block_per_vector_on_the_authors_unet():
    """On the authors' U-Net's last decoder map (16 channels at 128²): a change inside one
    64×64 block moves that block's vector only."""
    torch.manual_seed(0)
    net, head = UNet(architecture="authors").eval(), ProjectionHead(16, 64).eval()
    features = net(torch.randn(1, 3, 128, 128)).features.detach()
    base = head(features)
    changed = features.clone()
    changed[..., 64:, 64:] += 1.0  # the bottom-right block
    moved = (head(changed) - base).abs().sum(1)[0]
    assert base.shape == (1, 128, 2, 2)
    assert moved[1, 1] > 0 and torch.all(moved.flatten()[:3] == 0)


def test_model_name_is_checked_when_the_config_is_read():
    import typing

    from clcc.config import ModelConfig, load_config
    from clcc.errors import ClccError
    from clcc.models.unet import ARCHITECTURES

    hint = typing.get_type_hints(ModelConfig)["name"]
    assert set(typing.get_args(hint)) == set(ARCHITECTURES)
    with pytest.raises(ClccError, match=r"model.name must be one of authors, ssl4mis, got 'vgg'"):
        load_config(None, ["model.name=vgg"])
