"""How each authors' script is run at a clcc protocol, and the clcc run it is compared with.

A recipe says which file of which repository trains, with which of its own command-line
arguments (or, where a script reads a YAML config, which keys of a copy of it) the protocol is
set, where the checkpoint it chose ends up, and the clcc method and overrides that make the same
run on clcc's side. Two protocols are written down here: ACDC quick (`configs/acdc-quick.yaml`:
128², 6 + 6 slices a batch, SSL4MIS's split and its first 68 slices as the labelled ones) and
LA quick (`configs/la-quick.yaml`: V-Net patches of 64×64×32, 2 + 2 volumes a batch, 600
iterations, the first 8 volumes of UA-MT's `train.list` labelled).
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
class VolumeProtocol:
    """LA quick in UA-MT's terms. Its volumes are (x, y, z): clcc's patch (D, H, W) =
    (32, 64, 64) is UA-MT's (64, 64, 32). The script trains on the first 70 volumes of
    `train.list` (clcc holds the last 10 out for validation), its first 8 labelled. UA-MT's
    consistency ramp (40 steps of 150 iterations: full weight at its 6 000th) and lr step
    (×0.1 every 2 500) are scaled to the run as clcc's ramps and `optim.step_every` are."""

    patch: tuple[int, int, int] = (64, 64, 32)
    labelled_batch: int = 2
    unlabelled_batch: int = 2
    iterations: int = 600
    step_every: int = 250
    labelled: int = 8
    training_volumes: int = 70
    eval_every: int = 150
    pretrain: float = 0.25  # BCP's pre-training share, as clcc's `bcp` default

    @property
    def consistency_rampup(self) -> float:
        return self.iterations / 150

    @property
    def pretrain_iterations(self) -> int:
        return round(self.iterations * self.pretrain)


    @property
    def clcc_patch(self) -> list[int]:
        """The patch as clcc's (D, H, W) = UA-MT's (z, x, y)."""
        x, y, z = self.patch
        return [z, x, y]


LA_QUICK = VolumeProtocol()
BCP_LA_QUICK = VolumeProtocol(patch=(64, 64, 48))
"""LA quick for BCP's V-Net, whose forward max-pools its bottleneck with a kernel of 3 (a
feature its LA script never uses): the bottleneck is 1/16 of the patch, so the patch needs 48
slices, not 32."""


@dataclass(frozen=True)
class ImageProtocol:
    """Kvasir-SEG in CLCC-semi's terms. Its code cuts 5 × 5 patches of 64 pixels (`PROJECT_NUM`
    must be 5, its projection head strides 64 pixels), so images are 320², the paper's size,
    not the quick configs' 128²; its 300 epochs (the first 100 contrastive, and the learning
    rate's warm-up) are cut to `epochs`, a third each, as clcc's `stage1` and
    `configs/kvasir-authors-schedule.yaml` split them. Selection 0 of clcc's prepared set (120
    of its 600 training images labelled; its 200 validation and 200 test images)."""

    size: int = 320
    epochs: int = 9
    labelled_batch: int = 4
    unlabelled_batch: int = 4
    selection: int = 0

    @property
    def stage_epochs(self) -> int:
        return self.epochs // 3


KVASIR_SBS = ImageProtocol()


@dataclass(frozen=True)
class Recipe:
    """One authors' script and the clcc run that mirrors it.

    `kind` says how the script is started and its log read (`kinds.py`: its data layout, its
    own arguments or a copy of its config at the protocol); `patch` is a textual replacement
    applied to a copy of the script in the run folder (only for the reductions an issue asks
    for, such as UniMatch reduced to FixMatch), written beside the run. `eval_every` and
    `iterations` give the script's validation interval and length at the protocol, which the
    clcc side copies. `support` lists files beside the script (relative to its folder) that
    hold protocol constants too: a copy of each, with its replacements (where `{root}` stands
    for the run's LA folder), shadows the original for the script's imports.
    """

    repo: str
    script: str
    clcc_method: str
    checkpoint: str  # glob, relative to the run's snapshot folder ({iterations}: the run's)
    kind: str  # "ssl4mis" (argparse), "unimatch" (YAML config + lists), "uamt-la", "bcp-la",
    # "bcp-acdc" (argparse, SSL4MIS's layout), "clcc-semi" (a yacs config, a Kvasir layout)
    eval_every: int = 200
    clcc_overrides: tuple[str, ...] = ()
    supervised_only: bool = False
    patch: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = field(default=())
    config: str = "acdc-quick.yaml"  # clcc's side, in configs/
    support: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    volume: VolumeProtocol = LA_QUICK  # the volumetric protocol, both sides
    clcc_runs_of: str = ""  # a recipe whose clcc runs are this one's too (the same command)

    @property
    def volumetric(self) -> bool:
        return self.kind in ("uamt-la", "bcp-la")

    @property
    def clcc_checkpoint(self) -> str:
        """What the clcc side is compared with: the last weights where the script tests its
        last (UA-MT), else the best on validation."""
        return "last.pt" if self.kind == "uamt-la" else "best.pt"

    def iterations(self, protocol: Protocol) -> int:
        if self.kind == "clcc-semi":  # an epoch: the labelled images once, 4 a batch
            return KVASIR_SBS.epochs * KVASIR_LABELLED // KVASIR_SBS.labelled_batch
        if self.volumetric:
            return LA_QUICK.iterations
        if self.kind == "unimatch":  # whole epochs of the unlabelled loader
            return unimatch_epochs(protocol) * unimatch_epoch_length(protocol)
        return protocol.iterations

    def clcc_eval_every(self, protocol: Protocol) -> int:
        return unimatch_epoch_length(protocol) if self.kind == "unimatch" else self.eval_every


KVASIR_LABELLED = 120
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

def uamt_la_reduction(script: str, p: VolumeProtocol) -> tuple[tuple[str, str], ...]:
    """UA-MT's LA scripts at LA quick: their patch (hard-coded, and in the uncertainty passes'
    buffer), labelled / unlabelled indices and lr step are constants in the file, so a copy
    carries the protocol's (`script.diff` beside the run)."""
    x, y, z = p.patch
    step = (("if iter_num % 2500 == 0:", f"if iter_num % {p.step_every} == 0:"),
            ("lr_ = base_lr * 0.1 ** (iter_num // 2500)",
             f"lr_ = base_lr * 0.1 ** (iter_num // {p.step_every})"),
            ("patch_size = (112, 112, 80)", f"patch_size = ({x}, {y}, {z})"))
    if script.endswith("train_LA.py"):
        return (*step, ("num=16,", f"num={p.labelled},"))
    return (*step,
            ("preds = torch.zeros([stride * T, 2, 112, 112, 80]).cuda()",
             f"preds = torch.zeros([stride * T, 2, {x}, {y}, {z}]).cuda()"),
            ("preds = preds.reshape(T, stride, 2, 112, 112, 80)",
             f"preds = preds.reshape(T, stride, 2, {x}, {y}, {z})"),
            ("labeled_idxs = list(range(16))", f"labeled_idxs = list(range({p.labelled}))"),
            ("unlabeled_idxs = list(range(16, 80))",
             f"unlabeled_idxs = list(range({p.labelled}, {p.training_volumes}))"))


def bcp_la_reduction(p: VolumeProtocol) -> tuple[tuple[str, str], ...]:
    """BCP's LA script at LA quick: its patch, the validation of each stage (every 200
    iterations: LA quick's 150, so that the 150 pre-training iterations validate once and save
    the checkpoint self-training starts from; windows every 18 × 18 × 4 voxels: LA quick's
    half-overlapping ones, as clcc validates, 10 times fewer) and self-training's lr step
    (2 500: LA quick's 250, counted from self-training's start as the script counts) are
    constants in the file."""
    x, y, z = p.patch
    validation = ("            if iter_num % 200 == 0:\n                model.eval()\n"
                  "                dice_sample = test_3d_patch.var_all_case_LA(model, "
                  "num_classes=num_classes, patch_size=patch_size, stride_xy=18, stride_z=4)")
    ours = validation.replace("% 200", f"% {p.eval_every}").replace(
        "stride_xy=18, stride_z=4", f"stride_xy={x // 2}, stride_z={z // 2}")
    return (("patch_size = (112, 112, 80)", f"patch_size = ({x}, {y}, {z})"),
            ("loss_ce))\n\n" + validation, "loss_ce))\n\n" + ours),
            ("param_group['lr'] = lr_\n\n" + validation, "param_group['lr'] = lr_\n\n" + ours),
            ("if iter_num % 2500 == 0:", f"if iter_num % {p.step_every} == 0:"),
            ("lr_ = base_lr * 0.1 ** (iter_num // 2500)",
             f"lr_ = base_lr * 0.1 ** (iter_num // {p.step_every})"))


BCP_LA_SUPPORT = (
    ("utils/test_3d_patch.py", ((
        "LA(model, num_classes, patch_size=(112, 112, 80), stride_xy=18, stride_z=4):\n   \n"
        "    with open('/data/byh_data/SSNet_data/LA/test.list', 'r') as f:\n"
        "        image_list = f.readlines()\n"
        "    image_list = [\"/data/byh_data/SSNet_data/LA/2018LA_Seg_Training Set/\"",
        "LA(model, num_classes, patch_size=(112, 112, 80), stride_xy=18, stride_z=4):\n   \n"
        "    with open('{root}/val.list', 'r') as f:\n"
        "        image_list = f.readlines()\n"
        "    image_list = [\"{root}/2018LA_Seg_Training Set/\""),)),
    ("utils/BCP_utils.py", (
        ("w = np.random.randint(0, 112 - patch_pixel_x)",
         "w = np.random.randint(0, img_x - patch_pixel_x)"),
        ("h = np.random.randint(0, 112 - patch_pixel_y)",
         "h = np.random.randint(0, img_y - patch_pixel_y)"),
        ("z = np.random.randint(0, 80 - patch_pixel_z)",
         "z = np.random.randint(0, img_z - patch_pixel_z)"))),
)
"""The files BCP's LA script takes constants from: `var_all_case_LA` chooses the checkpoint on
the *test* list at its authors' paths (here the run's 10 validation volumes), and
`context_mask` draws the cube's start in a 112×112×80 patch whatever the patch (here in the
patch: at 64×64×32 the cube would otherwise reach past it)."""

UNIMATCH_PLAIN_FIXMATCH = (
    *UNIMATCH_FIXMATCH,
    ("preds, preds_fp = model(torch.cat((img_x, img_u_w)), True)",
     "preds = model(torch.cat((img_x, img_u_w)))"),
    ("pred_u_w_fp = preds_fp[num_lb:]", "pred_u_w_fp = preds[num_lb:]"),
    ("pred_u_s1, pred_u_s2 = model(torch.cat((img_u_s1, img_u_s2))).chunk(2)",
     "pred_u_s1 = model(img_u_s1)\n            pred_u_s2 = pred_u_s1"),
)
"""UniMatch reduced to FixMatch with nothing of the rest left running: no feature-perturbed
decoder pass (whose channel-dropped half shares the clean half's BatchNorm batch statistics)
and one strong view through the network (not 12 images in one BatchNorm batch): FixMatch as
clcc trains it. At seeds 0 and 1 it scores 44.56 and 23.80 where the script reduced by its
loss line alone scored 55.35 and 66.82: those passes' statistics were the gap
(docs/fidelity.md)."""

SSL4MIS_RAMP = 200 * 150
"""SSL4MIS's consistency ramp, `sigmoid_rampup(iter_num // 150, 200)`, spans 30 000 iterations
whatever the run's length; clcc's `rampup` counts runs, so the quick protocol's is 20."""
SSL4MIS_RAMP_OVERRIDE = (f"method.params.rampup={SSL4MIS_RAMP / Protocol().iterations:g}",)

SSL4MIS = "HiLab-git/SSL4MIS"
UAMT = "yulequan/UA-MT"
UAMT_LA_SUPERVISED = "code/train_LA.py"
UAMT_LA = "code/train_LA_meanteacher_certainty_unlabel.py"
UNIMATCH = "LiheYoung/UniMatch"
CLCC_SEMI = "ShinkaiZ/CLCC-semi"
BCP = "DeepMed-Lab-ECNU/BCP"
BCP_LA = "code/LA_BCP_train.py"
BCP_PRETRAIN = 10_000 / 40_000
"""BCP's ACDC script: 10 000 pre-training and 30 000 self-training iterations (clcc's `bcp`
default `pretrain` 0.25); at the quick protocol 375 + 1 125."""

RECIPES: dict[str, Recipe] = {
    "ssl4mis-supervised": Recipe(SSL4MIS, "code/train_fully_supervised_2D.py", "supervised",
                                 "unet_best_model.pth", "ssl4mis", supervised_only=True),
    "ssl4mis-mean-teacher": Recipe(SSL4MIS, "code/train_mean_teacher_2D.py", "mean-teacher",
                                   "unet_best_model.pth", "ssl4mis",
                                   clcc_overrides=SSL4MIS_RAMP_OVERRIDE),
    "ssl4mis-uamt": Recipe(SSL4MIS, "code/train_uncertainty_aware_mean_teacher_2D.py", "uamt",
                           "unet_best_model.pth", "ssl4mis",
                           clcc_overrides=SSL4MIS_RAMP_OVERRIDE),
    "ssl4mis-urpc": Recipe(SSL4MIS, "code/train_uncertainty_rectified_pyramid_consistency_2D.py",
                           "urpc", "unet_urpc_best_model.pth", "ssl4mis",
                           extra_args=("--model", "unet_urpc"),
                           clcc_overrides=SSL4MIS_RAMP_OVERRIDE),
    # its own recipe (`fixmatch-ssl4mis`): every image's weak view one of the 4 reflections
    "ssl4mis-fixmatch": Recipe(SSL4MIS, "code/train_fixmatch_standard_augs.py",
                               "fixmatch-ssl4mis", "unet_best_model.pth", "ssl4mis",
                               clcc_overrides=(*SSL4MIS_RAMP_OVERRIDE, "train.flips=reflections")),
    "unimatch": Recipe(UNIMATCH, "more-scenarios/medical/unimatch.py", "unimatch", "best.pth",
                       "unimatch"),
    "unimatch-fixmatch": Recipe(UNIMATCH, "more-scenarios/medical/unimatch.py", "fixmatch",
                                "best.pth", "unimatch", patch=UNIMATCH_FIXMATCH),
    "unimatch-fixmatch-plain": Recipe(UNIMATCH, "more-scenarios/medical/unimatch.py",
                                      "fixmatch", "best.pth", "unimatch",
                                      patch=UNIMATCH_PLAIN_FIXMATCH,
                                      clcc_runs_of="unimatch-fixmatch"),
    "uamt-la-supervised": Recipe(UAMT, UAMT_LA_SUPERVISED, "supervised",
                                 "iter_{iterations}.pth", "uamt-la", supervised_only=True,
                                 config="la-quick.yaml",
                                 patch=uamt_la_reduction(UAMT_LA_SUPERVISED, LA_QUICK)),
    "uamt-la": Recipe(UAMT, UAMT_LA, "uamt", "iter_{iterations}.pth", "uamt-la",
                      config="la-quick.yaml", patch=uamt_la_reduction(UAMT_LA, LA_QUICK)),
    # the script's lr: constant through pre-training, ×0.1 after 250 of self-training (global
    # 400); each mixed volume in its own pass (1 + 1 at 2 + 2)
    "bcp-la": Recipe(BCP, BCP_LA, "bcp", "self_train/VNet_best_model.pth", "bcp-la",
                     config="la-quick.yaml", patch=bcp_la_reduction(BCP_LA_QUICK),
                     support=BCP_LA_SUPPORT, volume=BCP_LA_QUICK,
                     clcc_overrides=(
                         "method.params.losses=la", "method.params.passes=separate",
                         f"method.params.pretrain={BCP_LA_QUICK.pretrain}",
                         f"optim.step_every="
                         f"{BCP_LA_QUICK.pretrain_iterations + BCP_LA_QUICK.step_every}",
                         f"data.patch={BCP_LA_QUICK.clcc_patch}")),
    # SSL4MIS's layout and arguments; its SGD keeps lr 0.01 throughout (no decay in either
    # stage) and runs each mixed half-batch in its own pass
    "bcp": Recipe(BCP, "code/ACDC_BCP_train.py", "bcp", "self_train/unet_best_model.pth",
                  "bcp-acdc", clcc_overrides=("optim.schedule=constant",
                                              "method.params.passes=separate",
                                              f"method.params.pretrain={BCP_PRETRAIN:g}")),
    # the paper's method beside its authors' code: their contrastive loss (`variant=authors`),
    # their BCE + Dice, their learning-rate warm-up (kvasir-authors-schedule.yaml), 5 × 5
    # patches; CLCC-semi has no supervised path of its own (its loop always cuts patches)
    "clcc-semi": Recipe(CLCC_SEMI, "main.py", "clcc", "best_*.pth", "clcc-semi",
                        config="kvasir-authors-schedule.yaml",
                        clcc_overrides=("method.params.n=5", "method.params.variant=authors",
                                        "loss.supervised=authors",
                                        f"data.size={KVASIR_SBS.size}",
                                        f"data.selection={KVASIR_SBS.selection}",
                                        f"train.epochs={KVASIR_SBS.epochs}",
                                        f"optim.warmup_epochs={KVASIR_SBS.stage_epochs}")),
}
