import math

import pytest
import torch

from clcc.geometry import from_patches, to_patches
from clcc.labels import BINARY
from clcc.losses import (
    cross_level_consistency_loss,
    cross_level_contrastive_loss,
    dice_loss,
    supervised_loss,
)


def test_dice_and_supervised_loss_by_hand():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # intersection 1, sum p 2, sum t 2 → Dice 0.5; BCE log 2
    assert dice_loss(logits, target).item() == pytest.approx(0.5, abs=1e-5)
    assert supervised_loss(logits, target).item() == pytest.approx(0.5 * (0.5 + math.log(2)),
                                                                   abs=1e-5)


def test_patch_round_trip_and_geometry():
    x = torch.randn(2, 3, 20, 20)
    p = to_patches(x, 5)
    assert p.shape == (50, 3, 4, 4)
    assert torch.equal(from_patches(p, 5), x)
    # patch i of image b is the block at row i // n, column i % n
    assert torch.equal(p[25 + 7], x[1, :, 4:8, 8:12])
    with pytest.raises(ValueError, match="cannot be cut into 3x3"):
        to_patches(x, 3)


def _contrast(q, k, **kw):
    return cross_level_contrastive_loss(torch.tensor([q]), torch.tensor([k]), **kw).item()


def test_contrastive_loss_eq1_by_hand():
    q = [[1.0, 0.0], [0.0, 1.0]]  # p(Z)_1, p(Z)_2
    k = [[1.0, 0.0], [1.0, 0.0]]  # p(z_1), p(z_2)
    # i=1: positive q1·k1 = 1, negative q1·q2 = 0; i=2: positive q2·k2 = 0, negative q2·q1 = 0
    expected = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert _contrast(q, k, tau=1.0) == pytest.approx(expected, rel=1e-6)
    # temperature divides the similarities
    expected_tau = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert _contrast(q, k, tau=0.5) == pytest.approx(expected_tau, rel=1e-6)


def test_contrastive_loss_authors_variant_by_hand():
    q = [[1.0, 0.0], [0.0, 1.0]]
    k = [[1.0, 0.0], [1.0, 0.0]]
    # negatives are the patch vectors: i=1 logits (1, 1), i=2 logits (0, 0) → log 2 each
    assert _contrast(q, k, tau=1.0, negatives="patch") == pytest.approx(math.log(2), rel=1e-6)
    # L1 normalisation: (3, 1) → (0.75, 0.25); (1, 1) → (0.5, 0.5)
    q1, k1 = [[3.0, 1.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, 5.0]]
    s11, s12 = 0.75 * 0.5 + 0.25 * 0.5, 0.0 * 0.75 + 1.0 * 0.25
    s21, s22 = 0.5 * 0.0 + 0.5 * 1.0, 1.0
    expected = (-math.log(math.exp(s11) / (math.exp(s11) + math.exp(s12)))
                - math.log(math.exp(s22) / (math.exp(s21) + math.exp(s22)))) / 2
    got = cross_level_contrastive_loss(
        torch.tensor([q1]), torch.tensor([k1]), tau=1.0, negatives="patch", norm=1
    ).item()
    # logits[i, j] = q_i · k_j: row 1 is (q1·k1, q1·k2), row 2 is (q2·k1, q2·k2)
    assert got == pytest.approx(expected, rel=1e-6)
    assert (s12, s21) == (0.25, 0.5)


def test_contrast_is_lower_for_matching_positives_than_shuffled():
    torch.manual_seed(0)
    q = torch.randn(4, 25, 16)
    k = q + 0.1 * torch.randn_like(q)
    shuffled = k[:, torch.randperm(25)]
    for negatives in ("image", "patch"):
        matched = cross_level_contrastive_loss(q, k, negatives=negatives)
        wrong = cross_level_contrastive_loss(q, shuffled, negatives=negatives)
        assert matched < 0.1 < wrong


def test_consistency_loss_by_hand_and_detached_target():
    image_logits = torch.zeros(1, 1, 4, 4, requires_grad=True)  # full image: p = 0.5
    patch_logits = torch.zeros(4, 1, 2, 2)
    patch_logits[0] = 30.0  # patch 0 predicts p ≈ 1 → MSE 0.25; the others agree (MSE 0)
    patch_logits.requires_grad_(True)
    prob = BINARY.probabilities
    total = cross_level_consistency_loss(prob(patch_logits), prob(image_logits), n=2)
    assert total.item() == pytest.approx(0.25, abs=1e-6)
    mean = cross_level_consistency_loss(prob(patch_logits), prob(image_logits), n=2,
                                        reduce="mean")
    assert mean.item() == pytest.approx(0.0625, abs=1e-6)
    patch_logits2 = torch.full((4, 1, 2, 2), -30.0, requires_grad=True)  # p ≈ 0: MSE 0.25 each
    cross_level_consistency_loss(prob(patch_logits2), prob(image_logits), n=2).backward()
    assert image_logits.grad is None  # the full-image side is the (detached) target
    assert patch_logits2.grad is not None


def test_the_authors_supervised_loss_by_hand():
    """BCE (plain mean) + mean over images of 1 − (2·Σpt + 1)/(Σp + Σt + 1), no ½."""
    from clcc.losses import authors_supervised_loss

    logits = torch.tensor([0.0, 0.0, 2.0, -2.0]).view(2, 1, 1, 2)  # p = .5 .5 | σ(2) σ(−2)
    target = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(2, 1, 1, 2)
    s2 = 1 / (1 + math.exp(-2))
    bce = (2 * math.log(2) - math.log(s2) - math.log(1 - s2)) / 4
    dice_1 = (2 * 0.5 + 1) / (1.0 + 1 + 1)
    dice_2 = (2 * (s2 + 1 - s2) + 1) / (1.0 + 2 + 1)
    expected = bce + ((1 - dice_1) + (1 - dice_2)) / 2
    assert authors_supervised_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_the_vnet_supervised_loss_by_hand():
    """UA-MT's ½(CE + 1 − (2Σpt + s)/(Σp² + Σt² + s)) over the batch, on volumes; the paper's
    Dice (Σp in the denominator) differs on the same input."""
    from clcc.losses import supervised_loss, vnet_supervised_loss

    logits = torch.tensor([0.0, 0.0, 2.0, -2.0]).view(1, 1, 1, 2, 2)  # a (1, 1, 1, 2, 2) volume
    target = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 1, 2, 2)
    s2 = 1 / (1 + math.exp(-2))
    bce = (2 * math.log(2) - math.log(s2) - math.log(1 - s2)) / 4
    squares = 2 * 0.25 + s2**2 + (1 - s2) ** 2
    dice = (2 * (0.5 + s2 + 1 - s2) + 1e-5) / (squares + 3 + 1e-5)
    assert vnet_supervised_loss(logits, target).item() == pytest.approx(
        0.5 * (bce + 1 - dice), rel=1e-6)
    assert supervised_loss(logits, target).item() == pytest.approx(
        0.5 * (bce + 1 - (2 * 1.5 + 1e-5) / (2 + 3 + 1e-5)), rel=1e-6)


def test_loss_supervised_picks_the_methods_loss():
    from clcc.losses import SUPERVISED_LOSSES
    from clcc.methods import build_method

    method = build_method("clcc", 64, {"n": 4}, "authors", widths=(8, 16, 32))
    assert method.supervised_loss is SUPERVISED_LOSSES["authors"]
    assert build_method("supervised", 64).supervised_loss is SUPERVISED_LOSSES["paper"]
