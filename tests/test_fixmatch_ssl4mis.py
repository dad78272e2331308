"""SSL4MIS's FixMatch (`fixmatch-ssl4mis`): its two rules worked by hand, and one whole step
against the loop body of `train_fixmatch_standard_augs.py` written out."""

import math
from copy import deepcopy

import pytest
import torch
from test_strong import _assert_same_gradients_and_statistics
from torch.distributions import Categorical

import clcc.methods.fixmatch_ssl4mis as ssl4mis_fixmatch
from clcc.labels import LabelSpace
from clcc.methods import build_method

CLASSES = LabelSpace(("rv", "myo", "lv"))


def test_pseudo_labels_are_the_argmax_of_min_max_normalised_classes_else_background():
    # (p − min) / max per pixel: 0.6 | 0.94 | 0.857 | 0.786 for the best class
    prob = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.85, 0.05], [0.2, 0.7, 0.1],
                         [0.15, 0.15, 0.7]]).T.reshape(1, 3, 1, 4)
    labels = ssl4mis_fixmatch.normalised_pseudo_labels(prob, 0.8)
    # class 1 kept at p = 0.7 (normalised 0.857); class 2 at p = 0.7 not (0.786): background
    assert labels.flatten().tolist() == [0, 1, 1, 0]


def test_sharpness_weight_by_hand():
    # class 0's map is flat over 4 pixels (entropy ln 4: 1), class 1's on 2 of them (ln 2: ½)
    full = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]]).view(1, 2, 2, 2)
    assert float(ssl4mis_fixmatch.sharpness_weight(full)) == pytest.approx(1 - 0.75)


def ssl4mis_dice_loss(inputs, target, num_classes=4):
    """SSL4MIS's `losses.DiceLoss(num_classes)` on probabilities: every class, background
    included, squared sums in the denominator, averaged."""
    target = torch.cat([(target == i).float() for i in range(num_classes)], dim=1)
    loss = 0.0
    for i in range(num_classes):
        score, t = inputs[:, i], target[:, i]
        intersect, y_sum, z_sum = (score * t).sum(), (t * t).sum(), (score * score).sum()
        loss += 1 - (2 * intersect + 1e-5) / (z_sum + y_sum + 1e-5)
    return loss / num_classes


def _script_step(model, weak_batch, strong_batch, label_batch, labeled_bs, conf_thresh,
                 consistency_weight):
    """The loop body of SSL4MIS's `train_fixmatch_standard_augs.py`, line by line, with its
    `DiceLoss(num_classes)`, `normalize` and `get_comp_loss` written out."""
    ce_loss = torch.nn.CrossEntropyLoss()
    dice_loss = ssl4mis_dice_loss

    def normalize(tensor):
        min_val = tensor.min(1, keepdim=True)[0]
        max_val = tensor.max(1, keepdim=True)[0]
        result = tensor - min_val
        return result / max_val

    def get_comp_loss(weak, strong):
        b, c, h, w = strong.shape
        il_output = torch.reshape(strong, (b, c, h * w))
        as_weight = 1 - (Categorical(probs=il_output).entropy() / math.log(h * w))
        as_weight = torch.mean(as_weight)
        comp_labels = torch.argmin(weak.detach(), dim=1, keepdim=False)
        comp_loss = as_weight * ce_loss(torch.add(torch.negative(strong), 1), comp_labels)
        return comp_loss, as_weight

    outputs_weak = model(weak_batch).logits
    outputs_weak_soft = torch.softmax(outputs_weak, dim=1)
    outputs_strong = model(strong_batch).logits
    outputs_strong_soft = torch.softmax(outputs_strong, dim=1)
    pseudo_mask = (normalize(outputs_weak_soft) > conf_thresh).float()
    outputs_weak_masked = outputs_weak_soft * pseudo_mask
    pseudo_outputs = torch.argmax(outputs_weak_masked[labeled_bs:].detach(), dim=1,
                                  keepdim=False)
    sup_loss = ce_loss(outputs_weak[:labeled_bs], label_batch[:][:labeled_bs].long()) + dice_loss(
        outputs_weak_soft[:labeled_bs], label_batch[:labeled_bs].unsqueeze(1))
    comp_loss, as_weight = get_comp_loss(weak=outputs_weak_soft, strong=outputs_strong_soft)
    unsup_loss = (ce_loss(outputs_strong[labeled_bs:], pseudo_outputs)
                  + dice_loss(outputs_strong_soft[labeled_bs:], pseudo_outputs.unsqueeze(1))
                  + as_weight * comp_loss)
    return sup_loss + consistency_weight * unsup_loss, pseudo_outputs


def test_one_step_is_the_script_step(monkeypatch):
    """Same weights, weak and strong views and dropout draws, 4 classes, SSL4MIS's U-Net: the
    same loss, every gradient and every BatchNorm buffer afterwards (two passes of their own,
    the pseudo-label rule, the complementary loss and its weight carrying gradients)."""
    torch.manual_seed(0)
    size, n_x, n_u = 32, 3, 3
    method = build_method("fixmatch-ssl4mis", size, {"consistency": 1.0, "rampup": 0.0},
                          in_channels=1, architecture="ssl4mis", labels=CLASSES)
    head = [m for m in method.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.weight.mul_(8)  # confident enough that the threshold keeps some pixels
    theirs = deepcopy(method.model)
    g = torch.Generator().manual_seed(1)
    img_x, img_u_w, img_s = (torch.rand(k, 1, size, size, generator=g)
                             for k in (n_x, n_u, n_x + n_u))
    mask_x = torch.randint(0, 4, (n_x, size, size), generator=g)
    monkeypatch.setattr(ssl4mis_fixmatch, "strong_view", lambda x, **jitter: img_s)

    torch.manual_seed(2)
    batch = {"image": img_x, "mask": mask_x[:, None].float(), "image_u": img_u_w}
    loss, logs = method.training_step(batch, 0.5)
    loss.backward()
    torch.manual_seed(2)
    expected, pseudo = _script_step(theirs, torch.cat([img_x, img_u_w]), img_s, mask_x, n_x,
                                    0.8, 1.0)
    expected.backward()
    assert 0.05 < float((pseudo == 0).float().mean()) < 0.95  # some background by default
    assert float(logs["background_pseudo"]) == pytest.approx(float((pseudo == 0).float().mean()))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    _assert_same_gradients_and_statistics(method.model, theirs)


def test_the_strong_view_is_the_scripts_jitter_alone(monkeypatch):
    """ColorJitter(0.8, 0.8, 0.8, 0.2) on every image, no blur: a grey slice changes by
    brightness and contrast only, so no pixel passes another."""
    seen = {}

    def spy(x, **jitter):
        seen.update(jitter)
        return x

    monkeypatch.setattr(ssl4mis_fixmatch, "strong_view", spy)
    method = build_method("fixmatch-ssl4mis", 32, in_channels=1, labels=CLASSES)
    method.training_step({"image": torch.rand(1, 1, 32, 32), "image_u": torch.rand(1, 1, 32, 32),
                          "mask": torch.zeros(1, 1, 32, 32)}, 0.5)
    assert seen == {"p": 1.0, "strength": 0.8, "hue": 0.2, "blur": 0.0}
    from clcc.data.strong import strong_view

    x = torch.linspace(-1, 1, 64).view(1, 1, 8, 8).repeat(16, 1, 1, 1)
    view = strong_view(x, **seen).flatten(1)
    assert (view.diff(dim=1) >= -1e-6).all()  # affine and clamped: no blur mixes pixels
    assert not torch.allclose(view, x.flatten(1))
