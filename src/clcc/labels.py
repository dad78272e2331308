"""The label space: the one place that knows how many classes a task has and what the network's
outputs mean (as nnU-Net's `LabelManager`; design.md section 8).

Two cases, one interface:
- binary (one foreground class, the default): one logit channel and a sigmoid, exactly as the
  project has always trained, so binary figures do not move;
- C classes (background 0 and C − 1 foreground classes): C logit channels and a softmax, as
  SSL4MIS, UniMatch and BCP train multi-class tasks.

Tensors: logits and probabilities are (B, heads, H, W) with `heads` 1 (binary: the foreground
probability) or C; label maps are (B, 1, H, W) float holding class values 0 … C − 1 (so they
mix, flip and resize like images). Methods, metrics and writers ask this object and never test
the number of classes themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SMOOTH = 1e-5
EPS = 1e-6  # probabilities are clamped to [EPS, 1 − EPS] before a logarithm


@dataclass(frozen=True)
class LabelSpace:
    """`names`: the foreground classes, in label order 1, 2, …; background is 0.
    `threshold`: the foreground probability from which a binary model's pixel is foreground
    (0.5; an evaluation option, for figures published at another cut, e.g. CLCC-semi's logit
    0.5, i.e. p = 0.622). A multi-class model takes the argmax and has none."""

    names: tuple[str, ...] = ("foreground",)
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names) or "background" in self.names:
            raise ValueError(f"classes {self.names}: give one or more distinct names, "
                             "background (0) aside")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold {self.threshold}: give a probability between 0 and 1")
        if not self.binary and self.threshold != 0.5:
            raise ValueError(f"threshold {self.threshold}: a model of {self.classes} classes "
                             "takes the most probable class; a threshold is for a binary one")

    @classmethod
    def from_names(cls, names: Sequence[str] | None) -> LabelSpace:
        return cls(tuple(names)) if names else cls()

    @classmethod
    def from_dict(cls, labels: dict[str, int] | None) -> LabelSpace:
        """From dataset.json-style `labels` (name → value, background 0, values 0 … C − 1)."""
        if not labels:
            return cls()
        ordered = sorted(labels.items(), key=lambda item: item[1])
        if [v for _, v in ordered] != list(range(len(ordered))) or ordered[0][0] != "background":
            raise ValueError(f"labels {labels}: need background 0 and values 1 … C − 1")
        return cls(tuple(name for name, _ in ordered[1:]))

    @property
    def classes(self) -> int:
        """C, background included."""
        return len(self.names) + 1

    @property
    def binary(self) -> bool:
        return len(self.names) == 1

    @property
    def heads(self) -> int:
        """Output channels of the network."""
        return 1 if self.binary else self.classes

    def as_dict(self) -> dict[str, int]:
        """dataset.json-style `labels`: name → value."""
        return {"background": 0, **{n: i + 1 for i, n in enumerate(self.names)}}

    @property
    def png_scale(self) -> int:
        """The factor a label map is written with: a binary mask as 0/255 (what a viewer
        shows), a multi-class label map by value."""
        return 255 if self.binary else 1

    @property
    def channel_suffixes(self) -> tuple[str, ...]:
        """File-name suffix of each probability channel: none for the one binary channel,
        `_<class>` for each class of a multi-class model."""
        return ("",) if self.binary else tuple(f"_{n}" for n in ("background", *self.names))

    # --- probabilities and hard labels ----------------------------------------------------

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, heads, …) float32: the sigmoid (binary) or the softmax over classes."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)

    def distribution(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, C, …): all C class probabilities ([1 − p, p] for binary)."""
        return torch.cat([1 - probs, probs], dim=1) if self.binary else probs

    def hard(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) float label map: p > threshold (binary), else the argmax."""
        if self.binary:
            return (probs > self.threshold).float()
        return probs.argmax(dim=1, keepdim=True).float()

    def segment(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) float label map straight from logits: the logit past the threshold's
        (0 at p = 0.5; binary), else the argmax."""
        if self.binary:
            return (logits > math.log(self.threshold / (1 - self.threshold))).float()
        return logits.argmax(dim=1, keepdim=True).float()

    def confidence(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, 1, …): the probability of the chosen class (max(p, 1 − p) for binary)."""
        if self.binary:
            return torch.maximum(probs, 1 - probs)
        return probs.amax(dim=1, keepdim=True)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) label map → (B, C, …) float."""
        if self.binary:
            labels = labels.float()
            return torch.cat([1 - labels, labels], dim=1)
        one = F.one_hot(labels[:, 0].long(), self.classes)
        return one.movedim(-1, 1).float()

    # --- what methods compute on probabilities --------------------------------------------

    def entropy(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) entropy in nats of each pixel's class distribution (at most ln C)."""
        full = self.distribution(probs.clamp(EPS, 1 - EPS))
        return -(full * full.log()).sum(dim=1, keepdim=True)

    @property
    def max_entropy(self) -> float:
        return math.log(self.classes)

    def kl(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) KL(p ‖ q) between class distributions."""
        fp = self.distribution(p.clamp(EPS, 1 - EPS))
        fq = self.distribution(q.clamp(EPS, 1 - EPS))
        return (fp * (fp / fq).log()).sum(dim=1, keepdim=True)

    def masked_dice_loss(self, probs: torch.Tensor, labels: torch.Tensor,
                         keep: torch.Tensor) -> torch.Tensor:
        """1 − soft Dice over the pixels where `keep` is 1, averaged over the C classes
        (background included), squared sums in the denominator: UniMatch's and SSL4MIS's
        `DiceLoss(n_classes)` with `ignore` (a binary task counts its two classes)."""
        full, target, keep = self.distribution(probs), self.one_hot(labels), keep.float()
        total = probs.new_zeros(())
        for c in range(self.classes):
            p, t = full[:, c : c + 1], target[:, c : c + 1]
            intersection = (p * t * keep).sum()
            squares = (p * p * keep).sum() + (t * t * keep).sum()
            total = total + 1 - (2 * intersection + SMOOTH) / (squares + SMOOTH)
        return total / self.classes

    def pixel_ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, 1, …) cross-entropy of each pixel (binary: BCE on the logit)."""
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float(),
                                                      reduction="none")
        return F.cross_entropy(logits.float(), labels[:, 0].long(), reduction="none")[:, None]

    def supervised_loss(self, kind: str = "paper") -> Callable[[torch.Tensor, torch.Tensor],
                                                               torch.Tensor]:
        """L_sup: binary, eq. (4) of the CLCC paper (`paper`), the CLCC authors' form or
        UA-MT's (`vnet`); C classes, SSL4MIS's 0.5·(CE + Dice over the classes) on the
        softmax."""
        from clcc.losses import SUPERVISED_LOSSES

        if self.binary:
            return SUPERVISED_LOSSES[kind]
        if kind != "paper":
            raise ValueError(f"loss.supervised={kind} is a binary loss; a "
                             f"{self.classes}-class task trains with CE + Dice (paper)")
        return self._multiclass_loss

    def _multiclass_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels[:, 0].long())
        dice = self.masked_dice_loss(self.probabilities(logits), labels,
                                     torch.ones_like(labels))
        return 0.5 * (ce + dice)


BINARY = LabelSpace()
