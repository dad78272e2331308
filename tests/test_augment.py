"""The training data path: uint8 augmentation, then one conversion to normalised floats."""

import pytest
import torch

from clcc.data.augment import augment_batch
from clcc.data.loaders import MEAN, STD, to_input
from clcc.engine.runtime import make_runtime
from clcc.engine.trainer import to_device_batch


def _host_batch(b: int = 6, size: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)
    return {"image": image, "mask": (image[..., 0] > 127).to(torch.uint8),
            "image_u": torch.randint(0, 256, (b, size, size, 3), generator=g, dtype=torch.uint8)}


def _dihedral(sample: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips × rotations of a (C,H,W) sample."""
    return [torch.rot90(s, k, dims=(-2, -1)) for s in (sample, sample.flip(-1)) for k in range(4)]


def test_mask_follows_its_image_and_every_sample_is_a_dihedral_image():
    host = _host_batch(b=32)
    batch = dict(host)
    augment_batch(batch, torch.Generator().manual_seed(0))
    assert torch.equal(batch["mask"], (batch["image"][..., 0] > 127).to(torch.uint8))
    seen = set()
    for before, after in zip(host["image"], batch["image"], strict=True):
        matches = [i for i, t in enumerate(_dihedral(before.permute(2, 0, 1)))
                   if torch.equal(t, after.permute(2, 0, 1))]
        assert matches
        seen.add(matches[0])
    assert len(seen) == 8  # 32 random draws reach every element of the group here


def test_device_batch_equals_normalising_first_then_transforming_floats():
    """Augmenting the uint8 pixels gives exactly what transforming the float input would."""
    host = _host_batch()
    runtime = make_runtime("cpu", "fp32", channels_last=True)
    batch = to_device_batch(host, runtime, torch.Generator().manual_seed(3))
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(3)  # the same draws, applied to float (B,C,H,W) tensors
    for key in ("image", "image_u"):
        x = (host[key].permute(0, 3, 1, 2).float() / 255 - MEAN) / STD
        flips = (torch.rand(x.shape[0], generator=g) < 0.5).tolist()
        turns = torch.randint(0, 4, (x.shape[0],), generator=g).tolist()
        expected = torch.stack([_dihedral(s)[4 * f + k] for s, f, k in zip(x, flips, turns,
                                                                            strict=True)])
        assert torch.equal(batch[key], expected)
        if key == "image":
            mask = torch.stack([_dihedral(m[None].float())[4 * f + k] for m, f, k in
                                zip(host["mask"], flips, turns, strict=True)])
            assert torch.equal(batch["mask"], mask)


def test_to_input_values_do_not_depend_on_the_memory_format():
    images = _host_batch()["image"]
    plain, last = to_input(images), to_input(images, torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, last)
    assert torch.allclose(plain[0, :, 0, 0], (images[0, 0, 0].float() / 255 - MEAN[0, :, 0, 0])
                          / STD[0, :, 0, 0])


def test_the_authors_flips_follow_their_distribution():
    """HFlip, VFlip, RandomRotate90 (0–3 turns) at p 0.5 each: the identity comes from no flip
    and no net turn, ¼·(½ + ½·¼) = 5/32, or both flips (a half turn) and a half turn,
    ¼·½·¼ = 1/32: 3/16, not the uniform 1/8."""
    from clcc.data.augment import random_flips_and_turns

    x = torch.arange(4, dtype=torch.uint8).view(1, 2, 2).repeat(32000, 1, 1)
    (out,) = random_flips_and_turns([x], torch.Generator().manual_seed(0), "authors")
    identity = (out == x[0]).flatten(1).all(1).float().mean().item()
    assert identity == pytest.approx(3 / 16, abs=0.01)
    (uniform,) = random_flips_and_turns([x], torch.Generator().manual_seed(0), "dihedral")
    assert (uniform == x[0]).flatten(1).all(1).float().mean().item() == pytest.approx(
        1 / 8, abs=0.01)


def test_ssl4mis_augmentation_follows_its_generator():
    """SSL4MIS's `RandomGenerator`: with p ½ a turn then a flip along one axis (always a
    reflection), else with p ½ a rotation by an integer angle in [−20, 20): reflections ½,
    small rotations ¼·39/40 (0° is one of the 40 angles), unchanged the rest."""
    from clcc.data.augment import random_flips_and_turns

    x = torch.zeros(2000, 64, 64, dtype=torch.uint8)
    x[:, 2:6, 3:60] = 1  # an asymmetric bar far from the centre: any turn moves it
    x[:, 6:40, 3:5] = 2
    reflections = torch.stack([torch.rot90(x[0].flip(1), k) for k in range(4)])
    (out,) = random_flips_and_turns([x], torch.Generator().manual_seed(0), "ssl4mis")
    same = (out == x[0]).flatten(1).all(1)
    mirrored = (out[:, None] == reflections[None]).flatten(2).all(2).any(1)
    rotated = ~same & ~mirrored
    assert mirrored.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert rotated.float().mean().item() == pytest.approx(0.25 * 39 / 40, abs=0.03)
    assert same.float().mean().item() == pytest.approx(0.25 + 0.25 / 40, abs=0.03)
    assert set(out.unique().tolist()) <= {0, 1, 2}  # nearest neighbour: no new values


def test_reflections_are_ssl4mis_fixmatchs_weak_view():
    """`WeakStrongAugment`'s `random_rot_flip` alone: a turn then a flip along one axis, so
    every image comes out as one of the 4 reflections, each with probability ¼, and never as
    it went in."""
    from clcc.data.augment import random_flips_and_turns

    x = torch.arange(4, dtype=torch.uint8).view(1, 2, 2).repeat(4000, 1, 1)
    reflections = torch.stack([torch.rot90(x[0].flip(1), k) for k in range(4)])
    (out,) = random_flips_and_turns([x], torch.Generator().manual_seed(0), "reflections")
    which = (out[:, None] == reflections[None]).flatten(2).all(2)
    assert which.any(1).all()
    assert which.float().mean(0).tolist() == pytest.approx([0.25] * 4, abs=0.03)


def test_rotation_turns_image_and_mask_alike():
    from clcc.data.augment import rotate

    image = torch.zeros(1, 32, 32, 1, dtype=torch.uint8)
    image[0, 10:22, 14:18] = 200
    mask = (image[..., 0] > 0).to(torch.uint8)
    turned_image, turned_mask = rotate(image, [15]), rotate(mask, [15])
    assert torch.equal((turned_image[..., 0] > 0).to(torch.uint8), turned_mask)
    assert not torch.equal(turned_mask, mask) and abs(int(turned_mask.sum()) - 48) <= 3
    assert torch.equal(rotate(mask, [0]), mask)
