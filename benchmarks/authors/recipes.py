"""How each authors' script is run at a clcc protocol, and the clcc run it is compared with.

A recipe says which file of which repository trains, with which of its own command-line
arguments (or, where a script reads a YAML config, which keys of a copy of it) the protocol is
set, where the checkpoint it chose ends up, and the clcc method and overrides that make the same
run on clcc's side. Only the ACDC quick protocol is written down here (`configs/acdc-quick.yaml`:
128², 6 + 6 slices a batch, SSL4MIS's split and its first 68 slices as the labelled ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Protocol:
    """The numbers both sides share."""

    size: int = 128
    labelled_batch: int = 6
    unlabelled_batch: int = 6
    iterations: int = 1500
    labelled_patients: int = 3


@dataclass(frozen=True)
class Recipe:
    """One authors' script and the clcc run that mirrors it.

    `arguments(protocol, seed)` are the script's own command-line arguments; `shim_args` are
    set by the shim after parsing (for flags the script declares unusable, such as SSL4MIS's
    `type=list` patch size); `config` edits a copy of the script's YAML config; `patch` is a
    textual replacement applied to a copy of the script in the run folder (only for the
    reductions an issue asks for, such as UniMatch reduced to FixMatch), written beside the run.
    `eval_every` and `iterations` give the script's validation interval and length at the
    protocol, which the clcc side copies.
    """

    repo: str
    script: str
    clcc_method: str
    checkpoint: str  # glob, relative to the run's snapshot folder
    kind: str  # "ssl4mis" (argparse protocol) or "unimatch" (YAML config + lists)
    eval_every: int = 200
    clcc_overrides: tuple[str, ...] = ()
    supervised_only: bool = False
    patch: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = field(default=())

    def iterations(self, protocol: Protocol) -> int:
        if self.kind == "unimatch":  # whole epochs of the unlabelled loader
            return unimatch_epochs(protocol) * unimatch_epoch_length(protocol)
        return protocol.iterations

    def clcc_eval_every(self, protocol: Protocol) -> int:
        return unimatch_epoch_length(protocol) if self.kind == "unimatch" else self.eval_every


ACDC_TRAINING_SLICES = 1312
ACDC_LABELLED_SLICES = {3: 68, 7: 136}


def unimatch_epoch_length(protocol: Protocol) -> int:
    """UniMatch's epoch: one pass over the unlabelled slices, drop_last."""
    unlabelled = ACDC_TRAINING_SLICES - ACDC_LABELLED_SLICES[protocol.labelled_patients]
    return unlabelled // protocol.unlabelled_batch


def unimatch_epochs(protocol: Protocol) -> int:
    """The whole epochs that come nearest the protocol's iterations without passing them."""
    return max(1, protocol.iterations // unimatch_epoch_length(protocol))


UNIMATCH_FIXMATCH = (
    ("loss = (loss_x + loss_u_s1 * 0.25 + loss_u_s2 * 0.25 + loss_u_w_fp * 0.5) / 2.0",
     "loss = (loss_x + loss_u_s1) / 2.0"),
)
"""UniMatch reduced to FixMatch (issue 27): only the weak-to-strong term of the first strong
view trains; the second view and the feature-perturbed branch are still computed (their
BatchNorm statistics still move), as in the probe that found the gap."""

SSL4MIS = "HiLab-git/SSL4MIS"
UNIMATCH = "LiheYoung/UniMatch"

RECIPES: dict[str, Recipe] = {
    "ssl4mis-supervised": Recipe(SSL4MIS, "code/train_fully_supervised_2D.py", "supervised",
                                 "unet_best_model.pth", "ssl4mis", supervised_only=True),
    "ssl4mis-mean-teacher": Recipe(SSL4MIS, "code/train_mean_teacher_2D.py", "mean-teacher",
                                   "unet_best_model.pth", "ssl4mis"),
    "ssl4mis-uamt": Recipe(SSL4MIS, "code/train_uncertainty_aware_mean_teacher_2D.py", "uamt",
                           "unet_best_model.pth", "ssl4mis"),
    "ssl4mis-urpc": Recipe(SSL4MIS, "code/train_uncertainty_rectified_pyramid_consistency_2D.py",
                           "urpc", "unet_urpc_best_model.pth", "ssl4mis",
                           extra_args=("--model", "unet_urpc")),
    "ssl4mis-fixmatch": Recipe(SSL4MIS, "code/train_fixmatch_standard_augs.py", "fixmatch",
                               "unet_best_model.pth", "ssl4mis"),
    "unimatch": Recipe(UNIMATCH, "more-scenarios/medical/unimatch.py", "unimatch", "best.pth",
                       "unimatch"),
    "unimatch-fixmatch": Recipe(UNIMATCH, "more-scenarios/medical/unimatch.py", "fixmatch",
                                "best.pth", "unimatch", patch=UNIMATCH_FIXMATCH),
}
