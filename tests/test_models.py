import importlib
import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clcc.labels import LabelSpace
from clcc.models.authors_weights import load_authors_model, ssl4mis_key
from clcc.models.heads import ProjectionHead, derive_strides
from clcc.models.unet import PyramidUNet, UNet

ACDC = LabelSpace.from_names(["rv", "myo", "lv"])


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


def test_a_state_dict_of_bcp_unet_predicts_the_same_in_clcc(tmp_path):
    """BCP's ACDC network (`UNet_2d`: SSL4MIS's U-Net plus contrastive heads it never trains),
    saved as its self-training saves it: clcc's `ssl4mis` U-Net gives the same logits."""
    module = authors_module("BCP", "BCP_CHECKOUT", "code/networks/unet.py")
    torch.manual_seed(0)
    theirs = module.UNet_2d(in_chns=1, class_num=4).eval()
    torch.save(theirs.state_dict(), tmp_path / "unet_best_model.pth")
    ours = load_authors_model(tmp_path / "unet_best_model.pth", ACDC, channels=1)
    x = torch.randn(2, 1, 64, 64)
    assert torch.allclose(ours(x).logits, theirs(x), atol=1e-5)


def test_the_former_ssl4mis_unet_keeps_its_weights_under_a_name_of_its_own():
    net = UNet(architecture="ssl4mis-v1")
    assert sum(p.numel() for p in net.parameters()) == 1_942_577
    assert _count(net.decoder, torch.nn.BatchNorm2d) == 8
    assert "encoder.0.4.weight" in net.state_dict()  # checkpoints made before still load
    assert net.head.kernel_size == (1, 1)


SSL4MIS_KEYS = json.loads((Path(__file__).parent / "data" / "ssl4mis_unet_keys.json").read_text())


@pytest.mark.parametrize("cls,theirs,params", [(UNet, "UNet", 1_813_764),
                                               (PyramidUNet, "UNet_URPC", 1_831_060)])
def test_ssl4mis_unet_holds_exactly_the_tensors_of_ssl4mis_own(cls, theirs, params):
    """Every tensor of SSL4MIS's class (names and shapes listed from its file) has one place of
    the same shape in clcc's `ssl4mis` network, and nothing else is there (URPC's unused
    bottleneck head aside)."""
    net = cls(in_channels=1, architecture="ssl4mis", labels=ACDC)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    mapped = {ssl4mis_key(k): shape for k, shape in SSL4MIS_KEYS[theirs].items()}
    mapped.pop(None, None)
    assert mapped == ours
    learnable = sum(p.numel() for p in net.parameters())
    unused = sum(math.prod(s) for k, s in SSL4MIS_KEYS[theirs].items() if ssl4mis_key(k) is None)
    assert learnable + unused == params  # SSL4MIS's own count: 1.81 M for its UNet
    assert net.head.kernel_size == (3, 3) and net.head.bias is not None
    assert all(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())


def authors_module(repo: str, variable: str, relative: str):
    """A file of an authors' checkout beside the project (`../authors/<repo>`, or where the
    environment variable says), imported on its own; the test skips without one."""
    checkout = Path(os.environ.get(variable, Path(__file__).parents[2] / "authors" / repo))
    source = checkout / relative
    if not source.is_file():
        pytest.skip(f"no {repo} checkout at {checkout} (set {variable})")
    spec = importlib.util.spec_from_file_location(f"{repo}_{source.stem}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ssl4mis_module():
    return authors_module("SSL4MIS", "SSL4MIS_CHECKOUT", "code/networks/unet.py")


@pytest.mark.parametrize("cls,theirs", [(UNet, "UNet"), (PyramidUNet, "UNet_URPC")])
def test_a_state_dict_of_ssl4mis_class_predicts_the_same_in_clcc(tmp_path, cls, theirs):
    """Saved from SSL4MIS's own class, loaded by `load_authors_model`: the same logits."""
    torch.manual_seed(0)
    original = getattr(_ssl4mis_module(), theirs)(in_chns=1, class_num=4).eval()
    for m in original.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"state_dict": original.state_dict()}, tmp_path / "theirs.pth")
    ours = load_authors_model(tmp_path / "theirs.pth", ACDC, channels=1)
    assert type(ours) is cls
    x = torch.randn(2, 1, 64, 64)
    expected = original(x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    assert torch.allclose(ours(x).logits, expected, atol=1e-5)


def test_a_config_saved_before_model_name_existed_reads_as_the_former_network():
    from clcc.config import config_from_dict

    assert config_from_dict({"model": {"widths": [16, 32, 64, 128, 256]}}).model.name == (
        "ssl4mis-v1")


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
    assert set(typing.get_args(hint)) == {*ARCHITECTURES, "vnet", "unet3d-dv"}
    with pytest.raises(ClccError, match=r"model.name must be one of authors\|ssl4mis\|"
                                        r"ssl4mis-v1\|vnet\|unet3d-dv, got 'vgg'"):
        load_config(None, ["model.name=vgg"])
    with pytest.raises(ClccError, match="model.name unet3d-dv is a 3-D network: set "
                                        "model.spatial_dims=3"):
        load_config(None, ["model.name=unet3d-dv"])


def test_a_checkpoint_of_the_former_ssl4mis_network_still_loads(tmp_path, capsys):
    """Saved as `ssl4mis` before that name matched SSL4MIS's file: loaded as `ssl4mis-v1`."""
    from dataclasses import asdict

    from clcc.config import load_config
    from clcc.engine.predict import load_trained_model

    old = UNet(widths=(4, 8, 16), architecture="ssl4mis-v1")
    cfg = load_config(None, ["model.name=ssl4mis", "model.widths=[4,8,16]"])
    torch.save({"config": asdict(cfg), "model": old.state_dict()}, tmp_path / "best.pt")
    loaded_cfg, model, _ = load_trained_model(tmp_path / "best.pt", "cpu")
    assert loaded_cfg.model.name == "ssl4mis-v1" and model.head.kernel_size == (1, 1)
    assert "former `ssl4mis` network" in capsys.readouterr().out


def _clcc_semi_unet2d():
    """CLCC-semi's `utils/models/unet2d.py` (it imports its package's `utils_unet`), from a
    checkout beside the project; the test skips without one."""
    checkout = Path(os.environ.get("CLCC_SEMI_CHECKOUT", Path(__file__).parents[2] / "authors"
                                   / "CLCC-semi"))
    if not (checkout / "utils" / "models" / "unet2d.py").is_file():
        pytest.skip(f"no CLCC-semi checkout at {checkout} (set CLCC_SEMI_CHECKOUT)")
    import sys

    sys.path.insert(0, str(checkout / "utils"))
    try:
        import models.unet2d as unet2d
    finally:
        sys.path.remove(str(checkout / "utils"))
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]  # a package name this common must not linger
    return unet2d


def test_the_authors_unet_holds_the_tensors_of_clcc_semi_own():
    """CLCC-semi's `BaseUnet2D` (feature scale 4: 16…256), from a checkout beside the project:
    the same parameter count and the same multiset of tensor shapes as `authors`."""
    theirs = _clcc_semi_unet2d().BaseUnet2D(feature_scale=4, n_classes=1, in_channels=3)
    ours = UNet(architecture="authors")
    assert sum(p.numel() for p in theirs.parameters()) == sum(
        p.numel() for p in ours.parameters()) == 2_465_329
    assert sorted(tuple(p.shape) for p in theirs.parameters()) == sorted(
        tuple(p.shape) for p in ours.parameters())


def test_a_state_dict_of_clcc_semi_unet_predicts_the_same_in_clcc(tmp_path):
    """CLCC-semi's `ProjUnet2D` trained weights (non-trivial BatchNorm statistics), saved as its
    `save_checkpoint` saves them, loaded by `load_authors_model`: the same logits."""
    from types import SimpleNamespace

    unet2d = _clcc_semi_unet2d()
    torch.manual_seed(0)
    cfg = SimpleNamespace(MODEL=SimpleNamespace(PROJECT_NUM=5))
    theirs = unet2d.ProjUnet2D(feature_scale=4, n_classes=1, in_channels=3, cfg=cfg).eval()
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    torch.save({"epoch": 3, "state_dict": theirs.state_dict(), "best_metric": np.float64(0.4)},
               tmp_path / "best_exp.pth")  # as its save_checkpoint: a NumPy scalar beside
    ours = load_authors_model(tmp_path / "best_exp.pth", LabelSpace(("polyp",)), channels=3)
    assert type(ours) is UNet
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours(x).logits, theirs(x)["seg_final"], atol=1e-5)


def test_clcc_semi_names_map_to_the_authors_unet():
    from clcc.models.authors_weights import clcc_semi_key

    assert clcc_semi_key("encoder.conv3.conv2.1.running_var") == "encoder.2.5.running_var"
    assert clcc_semi_key("encoder.center.conv1.0.weight") == "encoder.4.0.weight"
    assert clcc_semi_key("decoder.up_concat1.conv.conv2.0.bias") == "decoder.3.conv.3.bias"
    assert clcc_semi_key("module.final.weight") == "head.weight"
    assert clcc_semi_key("proj_final.1.conv1.0.weight") is None
    assert {"decoder.3.conv.3.bias", "encoder.2.5.running_var"} <= set(
        UNet(architecture="authors").state_dict())
    with pytest.raises(KeyError, match="not a layer"):
        clcc_semi_key("decoder.extra.weight")


def test_a_3d_unet_of_the_same_family_and_the_2d_one_unchanged():
    """`spatial_dims=3` swaps every layer for its 3-D twin; 2-D keeps its parameters."""
    net = UNet(in_channels=1, widths=(4, 8, 16), architecture="ssl4mis", labels=ACDC,
               spatial_dims=3)
    out = net(torch.randn(2, 1, 8, 12, 16))
    assert out.logits.shape == (2, 4, 8, 12, 16) and out.features.shape == (2, 4, 8, 12, 16)
    assert not any(isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)) for m in net.modules())
    flat = UNet(in_channels=1, widths=(4, 8, 16), architecture="ssl4mis", labels=ACDC)
    per_3d = sum(p.numel() for p in net.parameters())
    per_2d = sum(p.numel() for p in flat.parameters())
    assert per_3d > per_2d  # 27-tap kernels
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 6, 8, 8))


UAMT_VNET_PARAMETERS = 9_448_866
"""Parameters of UA-MT's `VNet(n_channels=1, n_classes=2, n_filters=16,
normalization='batchnorm', has_dropout=True)` (code/networks/vnet.py of yulequan/UA-MT)."""


def test_the_vnet_has_uamt_parameter_count_and_names():
    from clcc.models.vnet import VNet

    net = VNet(in_channels=1, labels=LabelSpace(("left atrium",)))
    two_class_head = 16 * 2 + 2 - (16 * 1 + 1)  # UA-MT's head has 2 softmax channels
    assert sum(p.numel() for p in net.parameters()) + two_class_head == UAMT_VNET_PARAMETERS
    assert "block_five_up.conv.0.weight" in net.state_dict() and "out_conv.weight" in (
        net.state_dict())
    assert net(torch.randn(1, 1, 16, 32, 16)).logits.shape == (1, 1, 16, 32, 16)


def test_the_vnet_features_are_the_decoder_map_before_the_head_dropout():
    """With a dropout of 1 every channel the output convolution reads is dropped in training
    (its logits are its bias alone), yet the features CLCC's projection head reads are the last
    decoder map itself: `block_nine`'s output, never zeroed by the head's dropout."""
    from clcc.models.vnet import VNet

    torch.manual_seed(0)
    net = VNet(labels=LabelSpace(("left atrium",)), dropout=[1.0]).train()
    seen = {}
    net.block_nine.register_forward_hook(lambda _m, _i, out: seen.update(map=out))
    out = net(torch.randn(2, 1, 16, 32, 16))
    assert torch.equal(out.features, seen["map"]) and out.features.abs().sum() > 0
    assert torch.allclose(out.logits, net.out_conv.bias.view(1, -1, 1, 1, 1).expand_as(out.logits))


def _uamt_probabilities_in_clcc_order(theirs: torch.nn.Module, x_xyz: torch.Tensor
                                      ) -> torch.Tensor:
    """Foreground probability of a two-channel (x, y, z) network, moved to clcc's (z, x, y)."""
    return torch.softmax(theirs(x_xyz), 1)[:, 1:].permute(0, 1, 4, 2, 3)


def test_a_state_dict_of_uamt_vnet_predicts_the_same_in_clcc(tmp_path):
    """UA-MT's own class saved, loaded by `load_authors_model`: on the same volume, turned to
    clcc's (z, x, y), clcc's one logit gives UA-MT's softmax foreground probability."""
    module = authors_module("UA-MT", "UAMT_CHECKOUT", "code/networks/vnet.py")
    torch.manual_seed(0)
    theirs = module.VNet(n_channels=1, n_classes=2, normalization="batchnorm",
                         has_dropout=True).eval()
    assert sum(p.numel() for p in theirs.parameters()) == UAMT_VNET_PARAMETERS
    torch.save(theirs.state_dict(), tmp_path / "iter_600.pth")
    ours = load_authors_model(tmp_path / "iter_600.pth", LabelSpace(("left atrium",)))
    x = torch.randn(1, 1, 32, 48, 16)  # (x, y, z), three different sides
    expected = _uamt_probabilities_in_clcc_order(theirs, x)
    assert torch.allclose(torch.sigmoid(ours(x.permute(0, 1, 4, 2, 3)).logits), expected,
                          atol=1e-5)


def test_a_state_dict_of_bcp_vnet_predicts_the_same_in_clcc(tmp_path):
    """BCP's own LA class (its layers under `encoder.` / `decoder.`, contrastive heads
    beside them) saved as its self-training saves it: clcc's one logit gives its softmax."""
    module = authors_module("BCP", "BCP_CHECKOUT", "code/networks/VNet.py")
    torch.manual_seed(0)
    theirs = module.VNet(n_channels=1, n_classes=2, normalization="batchnorm",
                         has_dropout=True).eval()
    torch.save(theirs.state_dict(), tmp_path / "VNet_best_model.pth")
    ours = load_authors_model(tmp_path / "VNet_best_model.pth", LabelSpace(("left atrium",)))
    x = torch.randn(1, 1, 32, 48, 16)
    out_seg, _ = theirs.decoder(theirs.encoder(x))  # its forward, less a pooling of x5
    expected = torch.softmax(out_seg, 1)[:, 1:].permute(0, 1, 4, 2, 3)
    assert torch.allclose(torch.sigmoid(ours(x.permute(0, 1, 4, 2, 3)).logits), expected,
                          atol=1e-5)


def test_bcp_vnet_names_map_to_clcc_and_its_heads_are_dropped():
    from clcc.models.authors_weights import vnet_key

    assert vnet_key("encoder.block_one.conv.0.weight") == "block_one.conv.0.weight"
    assert vnet_key("module.decoder.out_conv.bias") == "out_conv.bias"
    assert vnet_key("block_five_up.conv.0.weight") == "block_five_up.conv.0.weight"  # UA-MT's
    assert vnet_key("projection_head.1.running_mean") is None
    assert vnet_key("prediction_head.0.weight") is None
    assert vnet_key("contrastive_class_selector_memory1.3.bias") is None


def test_a_two_channel_xyz_vnet_loads_turned_and_with_one_logit(tmp_path):
    """Without a checkout: a V-Net with UA-MT's names, a two-channel head and weights made for
    (x, y, z) volumes (clcc's class with random kernels, saved under `net` as BCP saves) gives
    the same probabilities once loaded; without the turn of the kernels it would not."""
    from clcc.models.authors_weights import from_uamt_vnet
    from clcc.models.vnet import VNet

    la, widths = LabelSpace(("left atrium",)), [4, 8, 16, 32, 64]
    torch.manual_seed(0)
    theirs = VNet(in_channels=1, labels=la, widths=widths)
    theirs.out_conv = torch.nn.Conv3d(4, 2, 1)
    theirs.eval()
    mapped = from_uamt_vnet(theirs.state_dict(), la)
    kernel = theirs.state_dict()["block_one.conv.0.weight"]
    assert torch.equal(mapped["block_one.conv.0.weight"][:, :, 2, 0, 1], kernel[:, :, 0, 1, 2])
    ours = VNet(in_channels=1, labels=la, widths=widths)
    ours.load_state_dict(mapped)
    x = torch.randn(1, 1, 32, 48, 16)  # (x, y, z)
    expected = torch.softmax(theirs(x).logits, 1)[:, 1:].permute(0, 1, 4, 2, 3)
    assert torch.allclose(torch.sigmoid(ours.eval()(x.permute(0, 1, 4, 2, 3)).logits),
                          expected, atol=1e-5)
    unturned = {k: v for k, v in mapped.items() if v.dim() != 5 or "out_conv" in k} | {
        k: v for k, v in theirs.state_dict().items() if v.dim() == 5 and "out_conv" not in k}
    ours.load_state_dict(unturned)
    assert not torch.allclose(torch.sigmoid(ours(x.permute(0, 1, 4, 2, 3)).logits),
                              expected, atol=1e-3)


def test_load_authors_model_reads_a_vnet_saved_under_net(tmp_path):
    """BCP saves `{'net': state_dict, 'opt': ...}`; UA-MT a bare state dict: both give a V-Net."""
    from clcc.models.vnet import VNet

    torch.manual_seed(0)
    theirs = VNet(in_channels=1, labels=LabelSpace(("left atrium",)))
    theirs.out_conv = torch.nn.Conv3d(16, 2, 1)
    torch.save({"net": theirs.state_dict(), "opt": {}}, tmp_path / "VNet_best_model.pth")
    torch.save(theirs.state_dict(), tmp_path / "iter_600.pth")
    for name in ("VNet_best_model.pth", "iter_600.pth"):
        ours = load_authors_model(tmp_path / name, LabelSpace(("left atrium",)))
        assert isinstance(ours, VNet) and not ours.training
        assert ours.out_conv.weight.shape == (1, 16, 1, 1, 1)


SSL4MIS_DV_PARAMETERS = 5_884_504
"""Parameters of SSL4MIS's `unet_3D_dv_semi(n_classes=2, in_channels=1)`
(`code/networks/unet_3D_dv_semi.py`), the network of its 3-D URPC script."""


def test_unet3d_dv_has_ssl4mis_parameter_count_heads_and_dropout():
    from clcc.models.unet3d_dv import DeepSupervisedUNet3D

    net = DeepSupervisedUNet3D(in_channels=1, labels=LabelSpace(("left atrium",)))
    two_class_heads = sum(w + 1 for w in (16, 32, 64, 128))  # its 4 heads have 2 channels
    assert sum(p.numel() for p in net.parameters()) + two_class_heads == SSL4MIS_DV_PARAMETERS
    assert [net.dropout1.p, net.dropout2.p, net.dropout3.p, net.dropout4.p] == [0.5, 0.3, 0.2,
                                                                               0.1]
    out = net.eval()(torch.randn(1, 1, 16, 32, 48))
    assert out.logits.shape == (1, 1, 16, 32, 48) and out.features.shape == (1, 16, 16, 32, 48)
    assert [a.shape for a in out.aux] == [(1, 1, 16, 32, 48)] * 3
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 1, 8, 32, 48))


def test_load_authors_model_turns_a_unet_3d_dv_semi_checkpoint_and_folds_its_four_heads(
        tmp_path):
    """SSL4MIS's 3-D URPC script saves `unet_3D_dv_semi`'s bare state dict, two channels a
    head, trained on (x, y, z) volumes: loaded as a binary `unet3d-dv` on clcc's (z, x, y), each
    head's sigmoid is its softmax's foreground channel on the turned volume."""
    from clcc.models.unet3d_dv import DeepSupervisedUNet3D

    torch.manual_seed(0)
    theirs = DeepSupervisedUNet3D(in_channels=1, labels=LabelSpace(("left atrium",)))
    theirs.dsv1 = torch.nn.Conv3d(16, 2, 1)  # the two-class heads of n_classes=2
    for level, width in ((2, 32), (3, 64), (4, 128)):
        getattr(theirs, f"dsv{level}").dsv[0] = torch.nn.Conv3d(width, 2, 1)
    torch.save({f"module.{k}": v for k, v in theirs.state_dict().items()},
               tmp_path / "unet_3D_dv_semi_best_model.pth")
    ours = load_authors_model(tmp_path / "unet_3D_dv_semi_best_model.pth",
                              LabelSpace(("left atrium",)))
    assert isinstance(ours, DeepSupervisedUNet3D) and not ours.training
    x = torch.randn(1, 1, 32, 48, 16)  # (x, y, z)
    expected = theirs.eval()(x)
    got = ours(x.permute(0, 1, 4, 2, 3))
    for mine, its in zip([got.logits, *got.aux], [expected.logits, *expected.aux], strict=True):
        assert mine.shape == (1, 1, 16, 32, 48)
        assert torch.allclose(torch.sigmoid(mine),
                              its.softmax(1)[:, 1:].permute(0, 1, 4, 2, 3), atol=1e-5)


def test_a_state_dict_of_ssl4mis_unet_3d_dv_semi_predicts_the_same_in_clcc(monkeypatch):
    """SSL4MIS's own class: its state dict loads by name, and the four heads agree in eval mode
    and, from one seed, in training mode (the same dropout draws in the same order)."""
    import sys

    from clcc.models.unet3d_dv import DeepSupervisedUNet3D

    checkout = Path(os.environ.get("SSL4MIS_CHECKOUT",
                                   Path(__file__).parents[2] / "authors" / "SSL4MIS"))
    if not (checkout / "code" / "networks" / "unet_3D_dv_semi.py").is_file():
        pytest.skip(f"no SSL4MIS checkout at {checkout} (set SSL4MIS_CHECKOUT)")
    monkeypatch.syspath_prepend(str(checkout / "code"))
    for name in [m for m in sys.modules if m == "networks" or m.startswith("networks.")]:
        monkeypatch.delitem(sys.modules, name)  # another checkout's `networks` package
    theirs_class = importlib.import_module("networks.unet_3D_dv_semi").unet_3D_dv_semi
    for name in [m for m in sys.modules if m == "networks" or m.startswith("networks.")]:
        del sys.modules[name]  # not left for the next test to find
    torch.manual_seed(0)
    theirs = theirs_class(n_classes=3, in_channels=1)
    ours = DeepSupervisedUNet3D(in_channels=1, labels=LabelSpace(("a", "b")))
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 1, 32, 32, 16)
    for mode in (False, True):
        theirs.train(mode), ours.train(mode)
        torch.manual_seed(1)
        expected = theirs(x)  # dsv1 … dsv4, finest first
        torch.manual_seed(1)
        got = ours(x)
        for mine, its in zip([got.logits, *reversed(got.aux)], expected, strict=True):
            assert torch.allclose(mine, its, atol=1e-5)
