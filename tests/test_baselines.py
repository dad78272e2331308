import math

import pytest
import torch

from clcc.methods import build_method
from clcc.methods.ramps import sigmoid_rampup
from clcc.methods.uamt import binary_entropy, uncertainty_mask
from clcc.methods.urpc import binary_kl, rectified_consistency
from clcc.models.unet import UNet

from test_methods import SIZE, WIDTHS, _batch


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0.0, 0.5) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.25, 0.5) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0.7, 0.5) == 1.0 and sigmoid_rampup(0.3, 0.0) == 1.0


@pytest.mark.parametrize("name", ["mean-teacher", "uamt"])
def test_ema_teacher_moves_and_differs_from_student(name):
    torch.manual_seed(0)
    method = build_method(name, SIZE, widths=WIDTHS)
    assert all(torch.equal(a, b) for a, b in zip(method.teacher.parameters(),
                                                 method.model.parameters(), strict=True))
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-2)
    before = [p.clone() for p in method.teacher.parameters()]
    for step in range(1, 4):
        loss, _ = method.training_step(_batch(), 0.5)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step)
    moved = [not torch.equal(a, b) for a, b in zip(before, method.teacher.parameters(),
                                                   strict=True)]
    differs = [not torch.equal(a, b) for a, b in zip(method.teacher.parameters(),
                                                     method.model.parameters(), strict=True)]
    assert all(moved) and all(differs)
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_ema_update_by_hand():
    method = build_method("mean-teacher", SIZE, widths=WIDTHS)
    w_t = method.teacher.head.weight
    w_s = method.model.head.weight
    with torch.no_grad():
        w_t.fill_(1.0)
        w_s.fill_(3.0)
    method.after_step(1)  # decay min(1 − 1/2, 0.99) = 0.5 → 0.5·1 + 0.5·3
    assert torch.allclose(w_t, torch.full_like(w_t, 2.0))
    method.after_step(1000)  # decay 0.99 → 0.99·2 + 0.01·3
    assert torch.allclose(w_t, torch.full_like(w_t, 2.01))


def test_uncertainty_mask_by_hand():
    assert binary_entropy(torch.tensor(0.5)).item() == pytest.approx(math.log(2), rel=1e-5)
    # two pixels; passes agree on the first (p = 0.9), disagree on the second (0.1, 0.9)
    passes = torch.tensor([[0.9, 0.1], [0.9, 0.9]]).view(2, 1, 1, 1, 2)
    h_certain = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325
    threshold = 0.75 * math.log(2)  # 0.520
    assert h_certain < threshold
    mask = uncertainty_mask(passes, threshold).flatten().tolist()
    assert mask == [True, False]  # mean 0.5 → entropy ln 2 > threshold
    uamt = build_method("uamt", SIZE, widths=WIDTHS)
    assert uamt.threshold(0.0) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uamt.threshold(1.0) == pytest.approx(math.log(2))


def test_rectification_by_hand():
    p1, p2 = torch.full((1, 1, 1, 1), 0.8), torch.full((1, 1, 1, 1), 0.4)
    mean = 0.6
    d1 = mean * math.log(mean / 0.8) + 0.4 * math.log(0.4 / 0.2)
    d2 = mean * math.log(mean / 0.4) + 0.4 * math.log(0.4 / 0.6)
    assert binary_kl(torch.tensor(mean), torch.tensor(0.8)).item() == pytest.approx(d1, rel=1e-5)
    # per head: w·(p̄ − p)² / w + D = (p̄ − p)² + D for a single pixel
    expected = ((0.2**2 + d1) + (0.2**2 + d2)) / 2
    assert rectified_consistency([p1, p2]).item() == pytest.approx(expected, rel=1e-5)
    # a head that agrees with the mean contributes nothing
    same = torch.full((1, 1, 2, 2), 0.3)
    assert rectified_consistency([same, same]).item() == pytest.approx(0.0, abs=1e-6)


def test_urpc_pyramid_outputs_and_plain_checkpoint():
    method = build_method("urpc", SIZE, widths=WIDTHS)
    out = method.model(torch.randn(2, 3, SIZE, SIZE))
    assert len(out.aux) == 3 and all(a.shape == (2, 1, SIZE, SIZE) for a in out.aux)
    plain = UNet(widths=WIDTHS)
    plain.load_state_dict(method.eval_model().plain_state_dict())  # strict: main head only
    method.model.eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    assert torch.allclose(plain.eval()(x).logits, method.model(x).logits, atol=1e-6)
