"""UniMatch (Yang et al., CVPR 2023), as its medical script trains it
(LiheYoung/UniMatch, `more-scenarios/medical/unimatch.py`).

FixMatch (`clcc.methods.fixmatch`) with two changes: two strong views of each unlabelled image
(each with its own jitter, blur and CutMix box), and a feature-perturbed prediction of the weak
view: the decoder also runs on the encoder features after channel dropout (Dropout2d, 0.5), in
the same pass as the clean features. Every unlabelled term is the confident-pixel Dice over the
classes against the weak pseudo-labels (threshold 0.95); loss = (loss_x + 0.25·loss_u_s1 +
0.25·loss_u_s2 + 0.5·loss_u_w_fp) / 2, as in the script. The CutMix partner and the adaptations
are FixMatch's (its docstring).
"""

from __future__ import annotations

import torch

from clcc.methods.base import register
from clcc.methods.fixmatch import FixMatch, Mixed
from clcc.models.layers import channel_dropout


@register("unimatch")
class UniMatch(FixMatch):
    strong_views = 2
    weights = {"loss_u_s1": 0.25, "loss_u_s2": 0.25, "loss_u_w_fp": 0.5}

    def weak_pass(self, img_x: torch.Tensor, img_u_w: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One decoder pass over the clean and the channel-dropped encoder features."""
        features = self.model.encode(torch.cat([img_x, img_u_w]))
        both = [torch.cat([f, channel_dropout(f, 0.5)]) for f in features]
        logits = self.model.head(self.model.decode(both)[-1])
        clean, perturbed = logits.chunk(2)
        n = len(img_x)
        return clean[:n], self.labels.probabilities(clean[n:]), {
            "prob_u_w_fp": self.labels.probabilities(perturbed[n:])}

    def unlabelled_losses(self, img_u_w: torch.Tensor, mask_u_w: torch.Tensor,
                          keep: torch.Tensor, extra: dict[str, torch.Tensor],
                          mix: Mixed | None = None) -> dict[str, torch.Tensor]:
        terms = super().unlabelled_losses(img_u_w, mask_u_w, keep, extra, mix)
        terms["loss_u_w_fp"] = self.labels.masked_dice_loss(extra["prob_u_w_fp"], mask_u_w, keep)
        return terms
