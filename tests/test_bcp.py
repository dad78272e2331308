"""BCP: the copy-paste box, the mixing of images and labels, the region weights, the largest
component of a pseudo-label, and the two stages, against values worked out by hand."""

import pytest
import torch

import clcc.methods.bcp as bcp
from clcc.geometry import box_mask
from clcc.methods import build_method

from test_methods import SIZE, WIDTHS, _batch


def test_box_is_two_thirds_of_the_side():
    torch.manual_seed(0)
    mask = box_mask((48, 48))
    assert mask.shape == (48, 48) and (mask == 0).sum() == 32 * 32
    rows, cols = torch.nonzero(mask == 0, as_tuple=True)
    assert rows.max() - rows.min() == 31 and cols.max() - cols.min() == 31  # one square


def test_a_pasted_pixel_carries_its_source_label():
    method = build_method("bcp", SIZE, widths=WIDTHS)
    outside = torch.ones(4, 4)
    outside[:2, :2] = 0  # the box
    a, b = torch.full((1, 3, 4, 4), 1.0), torch.full((1, 3, 4, 4), 2.0)
    mixed = method._mixed(b, a, outside)  # b's box pasted into a
    assert (mixed[..., :2, :2] == 2).all() and mixed.sum() == 3 * (12 * 1 + 4 * 2)
    lab_a, lab_b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    right = torch.where(outside.bool(), -20.0, 20.0).view(1, 1, 4, 4)  # a's 0 out, b's 1 in
    dice, ce = bcp.mix_loss(right, lab_a, lab_b, outside, 1.0, 1.0)
    assert dice.item() == pytest.approx(0, abs=1e-4) and ce.item() == pytest.approx(0, abs=1e-6)
    wrong_in = torch.full((1, 1, 4, 4), -20.0)  # everything predicted as a's label
    _, ce_in = bcp.mix_loss(wrong_in, lab_a, lab_b, outside, 1.0, 0.5)
    assert ce_in.item() == pytest.approx(0.5 * 20, rel=1e-4)  # only the box is wrong, × 0.5


def test_pseudo_label_keeps_the_largest_component():
    labels = torch.zeros(2, 1, 6, 6)
    labels[0, 0, 0, :3] = 1  # 3 pixels
    labels[0, 0, 3:5, 3:6] = 1  # 6 pixels: kept
    out = bcp.largest_component(labels)
    assert out[0, 0, 3:5, 3:6].all() and out[0].sum() == 6
    assert out[1].sum() == 0  # nothing predicted: stays empty


def test_pre_training_uses_labelled_images_only_then_the_teacher_starts():
    torch.manual_seed(0)
    method = build_method("bcp", SIZE, {"pretrain": 0.5}, widths=WIDTHS)
    batch = _batch()
    torch.manual_seed(1)
    first, logs = method.training_step(batch, 0.2)
    torch.manual_seed(1)
    other = method.training_step({**batch, "image_u": batch["image_u"] + 5}, 0.2)[0]
    assert torch.equal(first, other) and logs["stage"] == 1  # unlabelled images unused
    method.after_step(1)
    assert not bool(method.teacher_started)
    with torch.no_grad():  # the student moves during pre-training
        for p in method.model.parameters():
            p.add_(0.01)
    loss, logs = method.training_step(batch, 0.6)
    assert logs["stage"] == 2 and bool(method.teacher_started) and torch.isfinite(loss)
    student = dict(method.model.named_parameters())
    teacher = {k: v.clone() for k, v in method.teacher.named_parameters()}
    assert all(torch.equal(student[k], teacher[k]) for k in student)  # started from it
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(1.0)
    method.after_step(2)  # EMA 0.99: the teacher moves 1 % of the way
    name = "encoder.0.0.weight"
    moved = dict(method.teacher.named_parameters())[name] - teacher[name]
    assert torch.allclose(moved, torch.full_like(moved, 0.01), atol=1e-6)


def _inputs_and_loss(passes: str, progress: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The student's inputs and the loss of one step, the student in eval mode (no dropout,
    running statistics) so that how images are grouped into passes cannot change the result."""
    torch.manual_seed(0)
    method = build_method("bcp", SIZE, {"passes": passes}, widths=WIDTHS)
    method.model.eval()
    seen = []
    method.model.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    torch.manual_seed(1)
    loss, _ = method.training_step(_batch(), progress)
    return seen, loss


def test_joint_passes_change_only_the_batch_statistics():
    separate, loss_separate = _inputs_and_loss("separate", 0.9)
    joint, loss_joint = _inputs_and_loss("joint", 0.9)
    assert [len(x) for x in separate] == [1, 1] and [len(x) for x in joint] == [2]
    assert torch.equal(torch.cat(separate), joint[0])
    assert torch.allclose(loss_joint, loss_separate, atol=1e-6)


def test_joint_pre_training_mixes_each_pair_both_ways():
    batch = _batch()
    img_a, img_b = batch["image"][:1], batch["image"][1:]
    torch.manual_seed(1)
    outside = box_mask((SIZE, SIZE))  # the box the step draws first
    (mixed,), _ = _inputs_and_loss("joint", 0.1)
    assert len(mixed) == 2  # 2 labelled images → 2 mixed ones, not 1
    assert torch.equal(mixed[0], img_a[0] * outside + img_b[0] * (1 - outside))
    assert torch.equal(mixed[1], img_b[0] * outside + img_a[0] * (1 - outside))


def test_la_dice_is_per_image_with_plain_sums_by_hand():
    """BCP's LA `mask_DiceLoss`: per image and class, Σp + Σt below, then the mean; the 2-D
    script's is one Dice per class over the batch with squared sums."""
    from clcc.labels import BINARY

    prob = torch.tensor([0.8, 0.6, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]).view(2, 1, 1, 4)
    target = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1]).view(2, 1, 1, 4)
    keep = torch.tensor([1.0, 1, 1, 0]).view(1, 1, 1, 4)  # the fourth pixel ignored
    # image 0: foreground 2·0.8/(1.4 + 1), background 2·(0.4 + 1)/(1.6 + 2); image 1: the
    # foreground perfect (1), its background empty in prediction and label (smooth/smooth: 1)
    by_hand = 1 - (1.6 / 2.4 + 2.8 / 3.6 + 1 + 1) / 4
    assert bcp.per_image_dice_loss(BINARY, prob, target, keep).item() == pytest.approx(
        by_hand, abs=1e-5)
    assert BINARY.masked_dice_loss(prob, target, keep).item() != pytest.approx(by_hand, abs=1e-3)


def test_la_pre_training_scores_the_whole_mixed_image():
    """`losses="la"`: pre-training is ½(CE + per-image Dice) of the whole mixed image against
    the mixed labels, as `LA_BCP_train.py`'s `pre_train` (the 2-D script weighs each region).
    In eval mode, so that no dropout draw differs between the step and the reference."""
    torch.manual_seed(0)
    params = {"pretrain": 0.5, "passes": "separate"}
    method = build_method("bcp", SIZE, {**params, "losses": "la"}, widths=WIDTHS).eval()
    batch = _batch()
    torch.manual_seed(3)
    outside = box_mask((SIZE, SIZE))
    torch.manual_seed(3)
    loss, _ = method.training_step(batch, 0.1)
    (img_a, img_b), (lab_a, lab_b) = batch["image"].split(1), batch["mask"].split(1)
    logits = method.model(img_a * outside + img_b * (1 - outside)).logits
    mixed = lab_a * outside + lab_b * (1 - outside)
    prob = torch.sigmoid(logits)
    fg = 1 - (2 * (prob * mixed).sum() + 1e-5) / ((prob + mixed).sum() + 1e-5)
    bg = 1 - (2 * ((1 - prob) * (1 - mixed)).sum() + 1e-5) / ((2 - prob - mixed).sum() + 1e-5)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, mixed)
    assert loss.item() == pytest.approx(((fg + bg) / 2 + ce).item() / 2, rel=1e-5)
    acdc = build_method("bcp", SIZE, params, widths=WIDTHS).eval()
    acdc.load_state_dict(method.state_dict())
    torch.manual_seed(3)
    assert acdc.training_step(batch, 0.1)[0].item() != pytest.approx(loss.item(), rel=1e-3)
