"""Training batches from the cached arrays: a labelled stream and an unlabelled stream.

An epoch is one pass over the labelled subset in batches of `labelled_batch`; the unlabelled
stream is a fresh permutation of the unlabelled pool, repeated as often as needed, so it cycles.
All randomness of an epoch comes from a generator seeded by (seed, epoch): a run resumed at an
epoch boundary sees exactly the batches an uninterrupted run would have seen.

With several processes (torchrun), each rank takes every `world`-th batch of the same global
order, so every sample is seen once per epoch across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def pixel_statistics(channels: int, spatial_dims: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (1, C, 1, 1) (a volume's: (1, C, 1, 1, 1)), of the input
    normalisation: ImageNet's for RGB photos (as the CLCC authors normalise); grey slices go in
    as [0, 1], as SSL4MIS feeds them, and volumes as their intensities were normalised."""
    shape = (1, channels, *[1] * spatial_dims)
    if channels == 3:
        return MEAN.view(shape), STD.view(shape)
    return torch.zeros(shape), torch.ones(shape)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The generator of one epoch's randomness; `stream` separates independent uses."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 8 + stream)


def to_input(
    images: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """uint8 (B,H,W,C) on any device → normalised float (B,C,H,W) for the network.

    The arithmetic is (x/255 − mean)/std, done in place on the pixel-interleaved layout with the
    statistics tiled along each row (long vectorised loops), so the result is channels-last for
    free; `memory_format` asks for the layout the network runs in.
    """
    b, h, w, c = images.shape
    x = images.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
    mean, std = pixel_statistics(c)
    rows = x.view(b * h, w * c)
    rows.sub_(mean.to(x.device).flatten().repeat(w)).div_(std.to(x.device).flatten().repeat(w))
    return x.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def to_target(masks: torch.Tensor) -> torch.Tensor:
    """uint8 0/1 (B,H,W) → float (B,1,H,W)."""
    return masks[:, None].float()


class TrainBatches:
    """Yields uint8 batches {"image", "mask", "image_u"} (host memory, pinned when asked)."""

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        labelled: np.ndarray,
        unlabelled: np.ndarray,
        labelled_batch: int,
        unlabelled_batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        pin_memory: bool = False,
        drop_last: bool = False,
    ) -> None:
        if len(labelled) == 0:
            raise ValueError("the labelled subset is empty")
        self.images, self.masks = images, masks
        self.labelled, self.unlabelled = np.asarray(labelled), np.asarray(unlabelled)
        self.labelled_batch = labelled_batch
        self.unlabelled_batch = unlabelled_batch if len(self.unlabelled) else 0
        self.seed, self.rank, self.world = seed, rank, world
        self.pin_memory, self.drop_last = pin_memory, drop_last

    @property
    def global_steps_per_epoch(self) -> int:
        """Labelled batches an epoch: the short last one dropped when asked (and there are
        whole ones)."""
        if self.drop_last:
            return max(1, len(self.labelled) // self.labelled_batch)
        return math.ceil(len(self.labelled) / self.labelled_batch)

    def __len__(self) -> int:
        """Steps per epoch on this rank (ranks get equal counts; the tail is shared out)."""
        return math.ceil(self.global_steps_per_epoch / self.world)

    def _take(self, array: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array[idx]))
        return t.pin_memory() if self.pin_memory else t

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's global labelled order and unlabelled stream (index arrays)."""
        g = epoch_generator(self.seed, epoch)
        lab = self.labelled[torch.randperm(len(self.labelled), generator=g).numpy()]
        n_u = self.global_steps_per_epoch * self.world * self.unlabelled_batch
        if self.unlabelled_batch == 0:
            return lab, np.empty(0, np.int64)
        reps = math.ceil(n_u / len(self.unlabelled))
        perms = [torch.randperm(len(self.unlabelled), generator=g).numpy() for _ in range(reps)]
        return lab, self.unlabelled[np.concatenate(perms)[:n_u]]

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        lab, unl = self.order(epoch)
        bl, bu = self.labelled_batch, self.unlabelled_batch
        for step in range(self.rank, len(self) * self.world, self.world):
            # ranks beyond the last global batch wrap around, so every rank steps equally
            start = (step % self.global_steps_per_epoch) * bl
            idx = lab[start : start + bl]
            batch = {"image": self._take(self.images, idx), "mask": self._take(self.masks, idx)}
            if bu:
                batch["image_u"] = self._take(self.images, unl[step * bu : (step + 1) * bu])
            yield batch
