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

    with pytest.raises(ClccError, match="unknown method .no-such-method.; choose one of .*clcc"):
        build_method("no-such-method", SIZE)


@pytest.mark.parametrize("params,message", [
    ({"consistency": "avg"}, r"method 'clcc' has no parameter 'consistency'; it takes: n \(int"),
    ({"consistency": 0}, r"has no parameter 'consistency'.*reduction \(one of sum\|mean"),
    ({"reduction": "avg"}, r"parameter reduction='avg' must be one of sum\|mean"),
    ({"n": 2.5}, r"parameter n=2.5 must be int"),
    ({"alpha": -1}, r"alpha >= 0"),
])
def test_clcc_parameters_are_checked_when_built(params, message):
    from clcc.errors import ClccError

    with pytest.raises(ClccError, match=message):
        build_method("clcc", SIZE, params, widths=WIDTHS)


def test_a_float_parameter_written_1e_1_is_the_float_it_means():
    """YAML 1.1 reads `1e-1` as a string: config keys took it as the float it means, method
    parameters refused it (`--set method.params.tau=1e-1`: "must be float")."""
    from clcc.methods import resolved_parameters

    method = build_method("clcc", SIZE, {"n": 2, "tau": "1e-1", "alpha": 1}, widths=WIDTHS)
    assert method.tau == 0.1 and method.alpha == 1.0 and isinstance(method.alpha, float)
    assert resolved_parameters("clcc", {"tau": "1e-1"})["tau"] == 0.1


def test_inherited_parameters_are_checked_too():
    from clcc.errors import ClccError

    with pytest.raises(ClccError, match=r"uamt.*evaluate='ema' must be one of student\|teacher"):
        build_method("uamt", SIZE, {"evaluate": "ema"}, widths=WIDTHS)
    assert build_method("uamt", SIZE, {"passes": 2, "ema_decay": 0.9}, widths=WIDTHS).passes == 2


def _patch_gradient(method, progress):
    """The gradient that reaches the first convolution's output on the patch batch."""
    seen = {}

    def keep(_module, _inputs, output):
        if output.shape[0] > 4 and output.requires_grad:  # the 4 × n² patches, not the 4 images
            output.register_hook(lambda g: seen.setdefault("grad", g))

    handle = method.model.encoder[0][0].register_forward_hook(keep)
    loss, _ = method.training_step(_batch(), progress)
    loss.backward()
    handle.remove()
    return seen.get("grad")


@pytest.mark.parametrize("variant,progress,reaches", [
    ("paper", 0.1, True),     # eq. (1): the patch vectors are trained too
    ("paper", 0.9, True),     # eq. (2): the patch predictions are pulled to the full image's
    ("authors", 0.1, False),  # the public code detaches the patch vectors (keys)
])
def test_gradients_reach_the_backbone_through_the_patch_pass(variant, progress, reaches):
    torch.manual_seed(0)
    method = build_method("clcc", SIZE, {"n": 4, "variant": variant}, widths=WIDTHS)
    grad = _patch_gradient(method, progress)
    assert (grad is not None and grad.abs().sum() > 0) == reaches


@pytest.mark.parametrize("patch_bn", ["update", "frozen"])
def test_frozen_patch_bn_keeps_patches_out_of_the_running_statistics(patch_bn):
    """With patch_bn=frozen the running statistics after a CLCC step are those of the full
    images alone; with update the patches move them too."""
    torch.manual_seed(0)
    method = build_method("clcc", SIZE, {"n": 4, "patch_bn": patch_bn}, widths=WIDTHS)
    reference = build_method("clcc", SIZE, {"n": 4}, widths=WIDTHS)
    reference.load_state_dict(method.state_dict())
    batch = _batch()
    method.training_step(batch, 0.1)
    reference.model(torch.cat([batch["image"], batch["image_u"]]))  # the full images only
    got = method.model.encoder[0][1].running_mean
    want = reference.model.encoder[0][1].running_mean
    assert torch.allclose(got, want) == (patch_bn == "frozen")
