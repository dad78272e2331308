import math

import pytest
import torch

from clcc.labels import BINARY
from clcc.methods import build_method
from clcc.methods.ramps import sigmoid_rampup
from clcc.methods.uamt import uncertainty_mask
from clcc.methods.urpc import rectified_consistency
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
    method.after_step(1)  # after the first step SSL4MIS passes 0: decay 0, teacher = student
    assert torch.allclose(w_t, torch.full_like(w_t, 3.0))
    with torch.no_grad():
        w_t.fill_(1.0)
    method.after_step(2)  # decay min(1 − 1/2, 0.99) = 0.5 → 0.5·1 + 0.5·3
    assert torch.allclose(w_t, torch.full_like(w_t, 2.0))
    method.after_step(1000)  # decay 0.99 → 0.99·2 + 0.01·3
    assert torch.allclose(w_t, torch.full_like(w_t, 2.01))


def test_teacher_noise_is_in_pixel_units():
    """SSL4MIS adds clamp(N(0, 0.1), ±0.2) to pixels in [0, 1]: on standardised inputs that is
    the same noise divided by each channel's std."""
    from clcc.data.loaders import STD

    method = build_method("mean-teacher", SIZE, widths=WIDTHS)
    torch.manual_seed(0)
    noise = method.noisy(torch.zeros(64, 3, 16, 16)) * STD  # back to pixel units
    assert noise.abs().max().item() == pytest.approx(0.2, abs=1e-6)  # the clamp, per channel
    assert 0.08 < noise.std().item() < 0.1  # N(0, 0.1), a little less after clamping


def test_bcp_largest_component_is_8_connected():
    """Two blobs touching at a corner are one component for skimage's 2-D `label` (8-connected),
    which BCP uses; 4-connectivity would split them and keep the larger one only."""
    from clcc.methods.bcp import largest_component

    mask = torch.zeros(1, 1, 6, 6)
    mask[0, 0, 0:2, 0:2] = 1  # 4 pixels
    mask[0, 0, 2:5, 2:5] = 1  # 9 pixels, diagonal neighbour of the first
    mask[0, 0, 5, 0] = 1  # a lone pixel apart from both
    kept = largest_component(mask)
    assert kept.sum().item() == 13 and kept[0, 0, 5, 0] == 0


def test_uncertainty_mask_by_hand():
    half = torch.full((1, 1, 1, 1), 0.5)
    assert BINARY.entropy(half).item() == pytest.approx(math.log(2), rel=1e-5)
    # two pixels; passes agree on the first (p = 0.9), disagree on the second (0.1, 0.9)
    passes = torch.tensor([[0.9, 0.1], [0.9, 0.9]]).view(2, 1, 1, 1, 2)
    h_certain = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325
    threshold = 0.75 * math.log(2)  # 0.520
    assert h_certain < threshold
    mask = uncertainty_mask(passes, threshold, BINARY).flatten().tolist()
    assert mask == [True, False]  # mean 0.5 → entropy ln 2 > threshold
    uamt = build_method("uamt", SIZE, widths=WIDTHS)
    assert uamt.threshold(0.0) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uamt.threshold(1.0) == pytest.approx(math.log(2))
    # the threshold ramps over the run whatever the consistency weight's ramp (both UA-MT
    # scripts: sigmoid_rampup(iter_num, max_iterations)); SSL4MIS's weight ramp at the quick
    # protocol is 20 runs long (`rampup=20`)
    slow = build_method("uamt", SIZE, {"rampup": 20}, widths=WIDTHS)
    assert slow.threshold(1.0) == pytest.approx(math.log(2))
    assert slow.threshold(0.5) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * math.log(2))


def test_rectification_by_hand():
    p1, p2 = torch.full((1, 1, 1, 1), 0.8), torch.full((1, 1, 1, 1), 0.4)
    mean = 0.6
    d1 = mean * math.log(mean / 0.8) + 0.4 * math.log(0.4 / 0.2)
    d2 = mean * math.log(mean / 0.4) + 0.4 * math.log(0.4 / 0.6)
    assert BINARY.kl(torch.full((1, 1, 1, 1), mean), p1).item() == pytest.approx(d1, rel=1e-5)
    # per head: w·(p̄ − p)² / w + D = (p̄ − p)² + D for a single pixel
    expected = ((0.2**2 + d1) + (0.2**2 + d2)) / 2
    assert rectified_consistency([p1, p2], BINARY).item() == pytest.approx(expected, rel=1e-5)
    # a head that agrees with the mean contributes nothing
    same = torch.full((1, 1, 2, 2), 0.3)
    assert rectified_consistency([same, same], BINARY).item() == pytest.approx(0.0, abs=1e-6)


def test_urpc_pyramid_outputs_and_plain_checkpoint():
    method = build_method("urpc", SIZE, widths=WIDTHS)
    out = method.model(torch.randn(2, 3, SIZE, SIZE))
    assert len(out.aux) == 3 and all(a.shape == (2, 1, SIZE, SIZE) for a in out.aux)
    plain = UNet(widths=WIDTHS)
    plain.load_state_dict(method.eval_model().plain_state_dict())  # strict: main head only
    method.model.eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    assert torch.allclose(plain.eval()(x).logits, method.model(x).logits, atol=1e-6)


# --- as SSL4MIS trains them (train_*_2D.py and networks/unet.py, HiLab-git/SSL4MIS) ---

@pytest.mark.parametrize("name,expected", [
    ("mean-teacher", [0.05, 0.1, 0.2, 0.3, 0.5]), ("uamt", [0.05, 0.1, 0.2, 0.3, 0.5]),
    ("urpc", [0.05, 0.1, 0.2, 0.3, 0.5]), ("supervised", []), ("clcc", []),
])
def test_ssl4mis_baselines_carry_its_encoder_dropout(name, expected):
    method = build_method(name, SIZE, {"n": 4} if name == "clcc" else None, widths=WIDTHS)
    rates = [m.p for m in method.model.encoder.modules() if type(m) is torch.nn.Dropout]
    assert rates == expected  # element-wise nn.Dropout, one per encoder level
    off = build_method(name, SIZE, {"n": 4} if name == "clcc" else None, widths=WIDTHS,
                       dropout=[0.0] * 5)
    assert not [m for m in off.model.encoder.modules() if isinstance(m, torch.nn.Dropout)]


@pytest.mark.parametrize("name", ["mean-teacher", "uamt"])
@pytest.mark.parametrize("on,count", [("unlabelled", 2), ("all", 4)])
def test_teacher_consistency_uses_the_unlabelled_images(name, on, count, monkeypatch):
    method = build_method(name, SIZE, {"consistency_on": on}, widths=WIDTHS)
    seen = []
    original = method.consistency_loss

    def spy(student, x, progress, logs):
        seen.append((student.shape[0], x.shape[0]))
        return original(student, x, progress, logs)

    monkeypatch.setattr(method, "consistency_loss", spy)
    method.training_step(_batch(), 0.5)  # 2 labelled + 2 unlabelled
    assert seen == [(count, count)]


@pytest.mark.parametrize("on,count", [("unlabelled", 2), ("all", 4)])
def test_urpc_consistency_uses_the_unlabelled_images(on, count, monkeypatch):
    import clcc.methods.urpc as urpc

    seen = []
    original = urpc.rectified_consistency
    monkeypatch.setattr(urpc, "rectified_consistency", lambda probs, labels: seen.append(
        [p.shape[0] for p in probs]) or original(probs, labels))
    build_method("urpc", SIZE, {"consistency_on": on}, widths=WIDTHS).training_step(_batch(), 0.5)
    assert seen == [[count] * 4]


def test_uamt_passes_differ_by_dropout_alone():
    """With no input noise, the 8 teacher passes still differ: the uncertainty comes from the
    encoder dropout, as in SSL4MIS (without dropout they were identical)."""
    torch.manual_seed(0)
    method = build_method("uamt", SIZE, {"noise_std": 0.0}, widths=WIDTHS)
    x = _batch()["image_u"]
    first, second = method.teacher_probabilities(x), method.teacher_probabilities(x)
    assert not torch.allclose(first, second)
    method.eval()  # evaluation: no dropout, deterministic
    assert torch.equal(method.model(x).logits, method.model(x).logits)


def test_urpc_perturbations_and_upsampling_as_ssl4mis():
    from clcc.models.unet import FeatureNoise, PyramidUNet

    torch.manual_seed(0)
    noisy = FeatureNoise()(torch.ones(3, 4, 5, 5))
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0, 0], noisy[0, 1])
    net = PyramidUNet(widths=WIDTHS).eval()
    assert type(net.perturb[0]) is torch.nn.Dropout and net.perturb[0].p == 0.5  # element-wise
    assert all(h.kernel_size == (3, 3) for h in net.aux_heads)
    coarsest = net(torch.randn(1, 3, SIZE, SIZE)).aux[0][0, 0]  # 8×8 map → 64×64, nearest
    block = coarsest[:8, :8]
    assert torch.equal(block, block[0, 0].expand(8, 8))


def test_uamt_four_classes_as_ssl4mis_2d_script():
    """ACDC's four classes: SSL4MIS's threshold stays (0.75 … 1)·ln 2 (`lnC`: ln 4), and its
    consistency is Σ mask·Σ_c (s_c − t_c)² / (2 Σ mask), written here as the script does."""
    from clcc.labels import LabelSpace

    space = LabelSpace(("rv", "myo", "lv"))
    uamt = build_method("uamt", SIZE, widths=WIDTHS, labels=space)
    wide = build_method("uamt", SIZE, {"threshold_max": "lnC"}, widths=WIDTHS, labels=space)
    assert uamt.threshold(1.0) == pytest.approx(math.log(2))
    assert wide.threshold(1.0) == pytest.approx(math.log(4))
    torch.manual_seed(0)
    student = torch.softmax(torch.randn(2, 4, 3, 3), 1)
    agreed = 4 * torch.randn(2, 4, 3, 3)  # passes agree more at some pixels than at others
    passes = [torch.softmax(agreed + torch.randn(2, 4, 3, 3), 1) for _ in range(8)]
    draws = iter(passes)
    uamt.teacher_probabilities = lambda x: next(draws)
    loss = uamt.consistency_loss(student, torch.zeros(2, 1, 3, 3), 0.0, {})
    mean = torch.stack(passes).mean(0)  # the script's lines
    uncertainty = -torch.sum(mean * torch.log(mean + 1e-6), dim=1, keepdim=True)
    mask = (uncertainty < (0.75 + 0.25 * math.exp(-5)) * math.log(2)).float()
    assert 0 < mask.sum() < mask.numel()  # some pixels kept, some not
    dist = (student - passes[0]) ** 2
    assert loss.item() == pytest.approx((torch.sum(mask * dist) / (2 * torch.sum(mask))).item(),
                                        rel=1e-5)


def _urpc_script_step(model, volume_batch, label_batch, labeled_bs, consistency_weight):
    """The loop body of SSL4MIS's `train_uncertainty_rectified_pyramid_consistency_2D.py`,
    written out (its four heads' terms as one loop; `kl_distance` is `KLDivLoss(reduction=
    'none')`)."""
    from test_fixmatch_ssl4mis import ssl4mis_dice_loss

    ce_loss, kl_distance = torch.nn.CrossEntropyLoss(), torch.nn.KLDivLoss(reduction="none")
    out = model(volume_batch)
    heads = [out.logits, *out.aux]  # outputs, outputs_aux1 … 3 (their order does not matter)
    softs = [torch.softmax(h, dim=1) for h in heads]
    labels = label_batch[:labeled_bs]
    supervised_loss = sum(ce_loss(h[:labeled_bs], labels.long()) for h in heads) + sum(
        ssl4mis_dice_loss(s[:labeled_bs], labels.unsqueeze(1)) for s in softs)
    supervised_loss = supervised_loss / 8
    preds = sum(softs) / 4
    consistency = 0.0
    for soft in softs:
        variance = torch.sum(kl_distance(torch.log(soft[labeled_bs:]), preds[labeled_bs:]),
                             dim=1, keepdim=True)
        exp_variance = torch.exp(-variance)
        dist = (preds[labeled_bs:] - soft[labeled_bs:]) ** 2
        consistency = consistency + torch.mean(dist * exp_variance) / (
            torch.mean(exp_variance) + 1e-8) + torch.mean(variance)
    return supervised_loss + consistency_weight * consistency / 4


def test_one_urpc_step_is_the_script_step():
    """Same weights, images and perturbation draws, 4 classes, SSL4MIS's pyramid U-Net, the
    consistency at full weight: clcc's `urpc` step gives the script's loss, every gradient and
    every BatchNorm buffer afterwards (one pass over labelled + unlabelled images, the
    supervised terms of four heads over 8, the rectified consistency on the unlabelled ones)."""
    from copy import deepcopy

    from test_strong import _assert_same_gradients_and_statistics

    from clcc.labels import LabelSpace

    torch.manual_seed(0)
    size, n_x, n_u = 32, 3, 3
    method = build_method("urpc", size, {"consistency": 1.0, "rampup": 0.0}, in_channels=1,
                          architecture="ssl4mis", labels=LabelSpace(("rv", "myo", "lv")))
    theirs = deepcopy(method.model)
    g = torch.Generator().manual_seed(1)
    img_x, img_u = (torch.rand(k, 1, size, size, generator=g) for k in (n_x, n_u))
    mask_x = torch.randint(0, 4, (n_x, size, size), generator=g)
    torch.manual_seed(2)
    loss, logs = method.training_step({"image": img_x, "mask": mask_x[:, None].float(),
                                       "image_u": img_u}, 0.5)
    loss.backward()
    torch.manual_seed(2)
    expected = _urpc_script_step(theirs, torch.cat([img_x, img_u]), mask_x, n_x, 1.0)
    expected.backward()
    assert float(logs["consist"]) > 0.01  # the consistency term is there to be compared
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    _assert_same_gradients_and_statistics(method.model, theirs)
