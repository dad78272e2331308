import pytest
import torch

from clcc.errors import ClccError
from clcc.methods import build_method
from clcc.models.norm import frozen_bn_statistics

from test_methods import _batch


def _clcc(**params):
    torch.manual_seed(0)
    return build_method("clcc", 64, {"n": 4, **params}, widths=(8, 16, 32))


def test_two_stage_schedule():
    method = _clcc()
    assert method.weights(0.0) == (1.0, 0.0) and method.weights(0.33) == (1.0, 0.0)
    assert method.weights(0.34) == (0.0, 1.0) and method.weights(1.0) == (0.0, 1.0)
    _, logs1 = method.training_step(_batch(), 0.1)
    _, logs2 = method.training_step(_batch(), 0.9)
    assert "contrast" in logs1 and "consist" not in logs1 and logs1["stage"] == 1
    assert "consist" in logs2 and "contrast" not in logs2 and logs2["stage"] == 2


def test_stage1_trains_backbone_and_projection_head():
    method = _clcc()
    loss, _ = method.training_step(_batch(), 0.1)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.head.parameters())


def test_ablations_drop_one_loss():
    _, logs = _clcc(alpha=0.0).training_step(_batch(), 0.1)
    assert set(logs) == {"sup", "stage"}
    _, logs = _clcc(beta=0.0).training_step(_batch(), 0.9)
    assert set(logs) == {"sup", "stage"}


def test_authors_variant_detaches_patch_keys():
    method = _clcc(variant="authors")
    patches_seen = []
    hook = method.model.encoder[0].register_forward_hook(
        lambda m, i, o: patches_seen.append(o.requires_grad)
    )
    loss, _ = method.training_step(_batch(), 0.1)
    hook.remove()
    assert patches_seen == [True, False]  # full images with gradient, patches without


def test_frozen_patch_bn_leaves_running_statistics_alone():
    method = _clcc(patch_bn="frozen")
    bn = method.model.encoder[0][1]
    with frozen_bn_statistics(method.model):
        before = bn.running_mean.clone()
        method.model(torch.randn(4, 3, 16, 16))
        assert torch.equal(before, bn.running_mean)
    assert bn.momentum == 0.1


def test_bad_patch_geometry_is_explained():
    with pytest.raises(ClccError, match="image size 100 must split into 4x4 patches"):
        build_method("clcc", 100, {"n": 4})
