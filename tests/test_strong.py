"""FixMatch and UniMatch: strong perturbations, pseudo-labels, CutMix and the loss weights,
checked against values worked out by hand."""

import pytest
import torch

import clcc.methods.fixmatch as fixmatch
from clcc.data.strong import colour_jitter, gaussian_blur, strong_view
from clcc.geometry import cutmix_boxes, paste
from clcc.labels import BINARY
from clcc.methods import build_method

from test_methods import SIZE, WIDTHS, _batch


def test_pseudo_labels_keep_only_confident_pixels():
    prob = torch.tensor([0.97, 0.5, 0.03, 0.96, 0.94, 0.05]).view(1, 1, 1, 6)
    label, keep = fixmatch.pseudo_labels(prob, 0.95)
    assert label.flatten().tolist() == [1, 0, 0, 1, 1, 0]  # p > 0.5, confident or not
    assert keep.flatten().tolist() == [1, 0, 1, 1, 0, 1]  # max(p, 1 − p) ≥ 0.95


def test_masked_dice_by_hand():
    def row(*values):
        return torch.tensor(values).view(1, 1, 1, -1)

    prob, target = row(1.0, 0, 1, 0), row(1.0, 0, 0, 0)
    # the one wrong pixel (index 2) ignored: both classes perfect
    kept = BINARY.masked_dice_loss(prob, target, row(1.0, 1, 0, 1))
    assert kept == pytest.approx(0, abs=1e-5)
    # all kept: foreground 1 − 2·1/(2 + 1) = 1/3, background 1 − 2·2/(2 + 3) = 1/5
    assert BINARY.masked_dice_loss(prob, target, torch.ones(1, 1, 1, 4)) == pytest.approx(
        (1 / 3 + 1 / 5) / 2, abs=1e-5)


def test_a_pasted_pixel_carries_its_source_label(monkeypatch):
    box = torch.zeros(2, 4, 4)
    box[0, :2, :2] = 1  # image 0 gets a 2×2 box from its partner, image 1 none
    monkeypatch.setattr(fixmatch, "cutmix_boxes", lambda b, shape: box)
    views = torch.stack([torch.full((3, 4, 4), 1.0), torch.full((3, 4, 4), 2.0)])
    labels = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])
    keep = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])
    img, target, kept = fixmatch.cutmix_view(views, labels, keep)
    assert (img[0, :, :2, :2] == 2).all() and (img[0, :, 2:, :] == 1).all()
    assert (target[0, :2, :2] == 1).all() and target[0].sum() == 4  # A's box carries B's label
    assert (kept[0, :2, :2] == 0).all() and kept[0].sum() == 12  # and B's confidence
    assert torch.equal(img[1], views[1]) and torch.equal(target[1], labels[1])


def test_cutmix_boxes_follow_unimatch_ranges():
    torch.manual_seed(0)
    boxes = cutmix_boxes(400, (64, 64))
    areas = boxes.flatten(1).sum(1) / 64**2
    drawn = areas[areas > 0]
    assert 0.35 < len(drawn) / 400 < 0.65  # p = 0.5
    assert drawn.min() >= 0.012 and drawn.max() <= 0.41  # U(0.02, 0.4), rounded to pixels
    assert cutmix_boxes(3, (8, 8), p=0.0).sum() == 0
    assert paste(torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.eye(2)[None]).tolist() == [
        [[1.0, 0.0], [0.0, 1.0]]]


def test_perturbations_are_identity_when_off_and_reproducible():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(colour_jitter(x, p=0.0), x) and torch.equal(gaussian_blur(x, p=0.0), x)
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(flat, p=1.0), flat)  # a blur keeps a flat image
    torch.manual_seed(1)
    first = strong_view(x)
    torch.manual_seed(1)
    assert torch.equal(strong_view(x), first) and first.shape == x.shape
    assert not torch.equal(first, x)


def test_a_volume_strong_view_keeps_its_intensities_and_each_channel():
    """z-scored volumes of two channels on different scales: the strong view is jittered and
    blurred within each channel's own range, so the voxels below 0 (which a [0, 1] clamp makes
    one value) stay distinct, and with the jitter and blur off it is the volume itself."""
    torch.manual_seed(0)
    x = torch.randn(2, 2, 8, 12, 12)
    x[:, 1] = x[:, 1] * 50 + 200
    torch.manual_seed(3)
    view = strong_view(x)
    assert view.shape == x.shape
    below = x[:, :1] < 0
    assert torch.unique(view[:, :1][below]).numel() > 0.9 * below.sum()  # not one clamped value
    assert view[:, :1][below].mean() < 0  # and still on the volume's own scale
    assert view[:, 1].mean() > 100 and view[:, 0].abs().mean() < 5
    for volume in range(2):
        for c in range(2):
            assert view[volume, c].min() >= x[volume, c].min() - 1e-4
            assert view[volume, c].max() <= x[volume, c].max() + 1e-4
    from clcc.data import strong

    original = strong.colour_jitter, strong.gaussian_blur
    try:
        strong.colour_jitter = strong.gaussian_blur = lambda v, *args: v
        assert torch.allclose(strong_view(x), x, atol=1e-5)
    finally:
        strong.colour_jitter, strong.gaussian_blur = original


@pytest.mark.parametrize("name,expected", [("fixmatch", (8 + 1) / 2),
                                           ("unimatch", (8 + 0.25 * 1 + 0.25 * 2 + 0.5 * 4) / 2)])
def test_branch_weights(name, expected, monkeypatch):
    method = build_method(name, SIZE, widths=WIDTHS)
    method.supervised_loss = lambda logits, mask: torch.tensor(8.0)
    terms = {"loss_u_s1": 1.0, "loss_u_s2": 2.0, "loss_u_w_fp": 4.0}
    monkeypatch.setattr(method, "unlabelled_losses", lambda img, mask, keep, extra, mix: {
        k: torch.tensor(terms[k]) for k in method.weights})
    loss, logs = method.training_step(_batch(), 0.5)
    assert loss.item() == pytest.approx(expected) and set(method.weights) <= set(logs)


def test_unimatch_perturbs_features_in_the_same_pass():
    torch.manual_seed(0)
    method = build_method("unimatch", SIZE, widths=WIDTHS)
    batch = _batch()
    logits_x, prob_u_w, extra = method.weak_pass(batch["image"], batch["image_u"])
    assert prob_u_w.shape == extra["prob_u_w_fp"].shape == (2, 1, SIZE, SIZE)
    assert not torch.allclose(prob_u_w, extra["prob_u_w_fp"])


def test_batched_blur_equals_a_plain_gaussian_convolution():
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12)
    got = gaussian_blur(x, p=1.0, sigma=(1.0, 1.0))
    taps = torch.arange(-3, 4, dtype=torch.float32)
    k1 = torch.exp(-0.5 * taps**2)
    k1 = k1 / k1.sum()
    k2 = (k1[:, None] * k1[None, :]).expand(3, 1, 7, 7)
    want = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), k2, groups=3)
    assert torch.allclose(got, want, atol=1e-6)


def _recorded_passes(method, monkeypatch):
    """(training mode, input) of every pass through the method's U-Net."""
    calls = []
    forward = method.model.forward

    def recording(x):
        calls.append((method.model.training, x.detach().clone()))
        return forward(x)

    monkeypatch.setattr(method.model, "forward", recording)
    return calls


def test_fixmatch_pastes_from_a_second_batch_predicted_in_eval_mode(monkeypatch):
    """As UniMatch's script: the CutMix partner is a second unlabelled batch (`img_u_w_mix`,
    the second half of what the engine draws), predicted with dropout off and BatchNorm's
    running statistics, and the box shows that batch's own strong view."""
    torch.manual_seed(0)
    method = build_method("fixmatch", SIZE, widths=WIDTHS)
    assert method.unlabelled_batches == 2
    monkeypatch.setattr(fixmatch, "cutmix_boxes", lambda b, shape: torch.ones(b, *shape))
    monkeypatch.setattr(fixmatch, "strong_view", lambda x: x)
    calls = _recorded_passes(method, monkeypatch)
    batch = _batch()
    batch["image_u"] = torch.randn(4, 3, SIZE, SIZE)
    method.training_step(batch, 0.5)
    (mix_mode, mix_in), (weak_mode, weak_in), (strong_mode, strong_in) = calls
    assert not mix_mode and torch.equal(mix_in, batch["image_u"][2:])
    assert weak_mode and torch.equal(weak_in[2:], batch["image_u"][:2])
    assert strong_mode and torch.equal(strong_in, batch["image_u"][2:])  # whole-image boxes
    assert method.model.training


def test_fixmatch_same_batch_partner_keeps_the_former_behaviour(monkeypatch):
    method = build_method("fixmatch", SIZE, {"mix": "same_batch"}, widths=WIDTHS)
    assert method.unlabelled_batches == 1
    monkeypatch.setattr(fixmatch, "cutmix_boxes", lambda b, shape: torch.ones(b, *shape))
    monkeypatch.setattr(fixmatch, "strong_view", lambda x: x)
    calls = _recorded_passes(method, monkeypatch)
    batch = _batch()
    method.training_step(batch, 0.5)
    (weak_mode, _), (strong_mode, strong_in) = calls
    assert weak_mode and strong_mode
    assert torch.equal(strong_in, batch["image_u"].roll(1, dims=0))


def test_the_engine_draws_the_second_batch(tiny_config):
    from clcc.engine.trainer import Trainer

    trainer = Trainer(tiny_config("method.name=fixmatch"))
    trainer.initialize()
    batch = next(iter(trainer.batches.epoch(0)))
    assert len(batch["image_u"]) == 2 * trainer.cfg.train.unlabelled_batch


def test_volumes_get_the_same_strong_views_in_3d():
    """A grey volume: brightness and contrast, a blur along its three axes, a CutMix cube of
    the drawn share of voxels (a 3-D adaptation: no author defines one)."""
    torch.manual_seed(0)
    flat = torch.full((2, 1, 8, 12, 12), 0.3)
    assert torch.allclose(gaussian_blur(flat, p=1.0), flat)  # a blur keeps a flat volume
    point = torch.zeros(1, 1, 9, 9, 9)
    point[0, 0, 4, 4, 4] = 1.0
    blurred = gaussian_blur(point, p=1.0)
    near = blurred[0, 0, 3, 4, 4], blurred[0, 0, 4, 3, 4], blurred[0, 0, 4, 4, 3]
    assert near[0] > 0 and torch.allclose(near[0], near[1]) and torch.allclose(near[1], near[2])
    x = torch.rand(3, 1, 8, 12, 12)
    assert strong_view(x).shape == x.shape
    cubes = cutmix_boxes(200, (8, 16, 16))
    drawn = cubes.flatten(1).sum(1)
    drawn = drawn[drawn > 0]
    assert 0.3 < len(drawn) / 200 < 0.7 and drawn.max() <= 0.41 * 8 * 16 * 16
    one = cubes[cubes.flatten(1).sum(1).argmax()]
    idx = one.nonzero()
    span = idx.max(0).values - idx.min(0).values + 1
    assert int(span.prod()) == int(one.sum())  # one solid box


def _unimatch_step(model, img_x, mask_x, img_u_w, img_u_s, img_u_w_mix, img_u_s_mix, boxes,
                   conf_thresh, fp):
    """The loop body of UniMatch's `more-scenarios/medical/unimatch.py`, line by line, with its
    `DiceLoss(n_classes)` written out: the reference of the tests below. `img_u_s`,
    `img_u_s_mix`, `boxes`: one entry per strong view. Two views and `fp` (its feature-perturbed
    decoder pass) are the script; one view without it is the script reduced to FixMatch (loss =
    (loss_x + loss_u_s1) / 2)."""
    def dice_loss(probs, target, ignore):
        total = 0.0
        for i in range(probs.shape[1]):
            score, t = probs[:, i][ignore != 1], (target == i).float()[ignore != 1]
            total = total + 1 - (2 * (score * t).sum() + 1e-5) / (
                (t * t).sum() + (score * score).sum() + 1e-5)
        return total / probs.shape[1]

    with torch.no_grad():
        model.eval()
        pred_u_w_mix = model(img_u_w_mix).logits.detach()
        conf_u_w_mix = pred_u_w_mix.softmax(dim=1).max(dim=1)[0]
        mask_u_w_mix = pred_u_w_mix.argmax(dim=1)
    img_u_s = [view.clone() for view in img_u_s]
    for view, view_mix, box in zip(img_u_s, img_u_s_mix, boxes, strict=True):
        inside = box.unsqueeze(1).expand(view.shape) == 1
        view[inside] = view_mix[inside]
    model.train()
    num_lb, num_ulb = img_x.shape[0], img_u_w.shape[0]
    if fp:  # its UNet.forward(x, need_fp=True)
        feature = model.encode(torch.cat((img_x, img_u_w)))
        outs = model.decode([torch.cat((feat, torch.nn.Dropout2d(0.5)(feat)))
                             for feat in feature])[-1]
        preds, preds_fp = model.head(outs).chunk(2)
        pred_u_w_fp = preds_fp[num_lb:]
    else:
        preds = model(torch.cat((img_x, img_u_w))).logits
    pred_x, pred_u_w = preds.split([num_lb, num_ulb])
    pred_u_s = model(torch.cat(img_u_s)).logits.chunk(len(img_u_s))
    pred_u_w = pred_u_w.detach()
    conf_u_w, mask_u_w = pred_u_w.softmax(dim=1).max(dim=1)[0], pred_u_w.argmax(dim=1)
    loss_x = (torch.nn.functional.cross_entropy(pred_x, mask_x)
              + dice_loss(pred_x.softmax(dim=1), mask_x, torch.zeros_like(mask_x))) / 2
    loss_u_s = []
    for pred, box in zip(pred_u_s, boxes, strict=True):
        mask_u_w_cutmixed, conf_u_w_cutmixed = mask_u_w.clone(), conf_u_w.clone()
        mask_u_w_cutmixed[box == 1] = mask_u_w_mix[box == 1]
        conf_u_w_cutmixed[box == 1] = conf_u_w_mix[box == 1]
        loss_u_s.append(dice_loss(pred.softmax(dim=1), mask_u_w_cutmixed,
                                  (conf_u_w_cutmixed < conf_thresh).float()))
    ratio = (conf_u_w >= conf_thresh).float().mean()
    if not fp:
        return (loss_x + loss_u_s[0]) / 2.0, ratio
    loss_u_w_fp = dice_loss(pred_u_w_fp.softmax(dim=1), mask_u_w,
                            (conf_u_w < conf_thresh).float())
    return (loss_x + loss_u_s[0] * 0.25 + loss_u_s[1] * 0.25 + loss_u_w_fp * 0.5) / 2.0, ratio


def _one_step_both_ways(name, views, monkeypatch):
    """clcc's step of `name` and the script's loop body on the same weights, images, strong
    views (`views` of them), CutMix boxes and dropout draws, 4 classes, SSL4MIS's U-Net: both
    models after `backward`, both losses and keep ratios."""
    from copy import deepcopy

    from clcc.labels import LabelSpace

    torch.manual_seed(0)
    size, b = 32, 3
    method = build_method(name, size, {"threshold": 0.5}, in_channels=1,
                          architecture="ssl4mis", labels=LabelSpace(("rv", "myo", "lv")))
    head = [m for m in method.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.mul_(8)  # confident enough that the threshold keeps some pixels
    theirs = deepcopy(method.model)
    g = torch.Generator().manual_seed(1)
    img_x, img_u_w, img_u_w_mix = (torch.rand(b, 1, size, size, generator=g) for _ in range(3))
    img_u_s = [torch.rand(b, 1, size, size, generator=g) for _ in range(views)]
    img_u_s_mix = [torch.rand(b, 1, size, size, generator=g) for _ in range(views)]
    mask_x = torch.randint(0, 4, (b, size, size), generator=g)
    boxes = [torch.zeros(b, size, size) for _ in range(views)]
    boxes[0][0, 4:20, 8:30], boxes[0][2, :10, :10] = 1, 1  # image 1: no box (p = 0.5)
    if views > 1:
        boxes[1][1, 2:30, 16:28] = 1
    drawn = {"own": iter(img_u_s), "mix": iter(img_u_s_mix), "box": iter(boxes)}
    monkeypatch.setattr(fixmatch, "strong_view", lambda x: next(
        drawn["own" if torch.equal(x, img_u_w) else "mix"]))
    monkeypatch.setattr(fixmatch, "cutmix_boxes", lambda n, shape: next(drawn["box"]))

    torch.manual_seed(2)
    batch = {"image": img_x, "mask": mask_x[:, None].float(),
             "image_u": torch.cat([img_u_w, img_u_w_mix])}
    loss, logs = method.training_step(batch, 0.5)
    loss.backward()
    torch.manual_seed(2)
    expected, ratio = _unimatch_step(theirs, img_x, mask_x, img_u_w, img_u_s, img_u_w_mix,
                                     img_u_s_mix, boxes, 0.5, fp=views > 1)
    expected.backward()
    assert 0.05 < float(ratio) < 0.95  # some pixels kept, some not
    assert float(logs["mask_ratio"]) == pytest.approx(float(ratio))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    return method.model, theirs


def _assert_same_gradients_and_statistics(ours, theirs):
    reference = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.allclose(p.grad, reference[name].grad, atol=1e-6, rtol=1e-4), name
    for (name, buf), ref in zip(ours.named_buffers(), theirs.buffers(), strict=True):
        assert torch.allclose(buf.float(), ref.float(), atol=1e-6), name


def test_one_fixmatch_step_is_the_reduced_unimatch_step(monkeypatch):
    """The whole step, not its terms: with the same weights, images, strong views, CutMix box
    and dropout draws, clcc's FixMatch and UniMatch's loop body reduced to FixMatch give the
    same loss, the same gradients and the same BatchNorm running statistics afterwards (which
    passes run in eval mode, what is pasted from where, which pixels count)."""
    _assert_same_gradients_and_statistics(*_one_step_both_ways("fixmatch", 1, monkeypatch))


def test_one_unimatch_step_is_the_script_step(monkeypatch):
    """The same for UniMatch and the script's whole loop body: two strong views in one pass,
    each with its own box and partner view, and the feature-perturbed decoder pass (the same
    channel-dropout draws), weighted ¼, ¼, ½."""
    _assert_same_gradients_and_statistics(*_one_step_both_ways("unimatch", 2, monkeypatch))
