"""Each kind of authors' script the harness runs: the data layout it reads (links to the
shared data, never copies), its own arguments at the protocol, where it saves, and the
validation curve its log holds. `KINDS` maps a recipe's `kind` to its `Kind`; the harness
(`side_by_side.py`) does the rest the same way for every kind."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recipes import (
    ACDC_LABELLED_SLICES,
    BCP_PRETRAIN,
    KVASIR_LABELLED,
    KVASIR_SBS,
    ImageProtocol,
    Protocol,
    Recipe,
    VolumeProtocol,
    unimatch_epochs,
)

NOTES: list[str] = []
"""What the harness changed for a run, in order: printed, and written at the head of its log."""


def note(line: str) -> None:
    NOTES.append(f"[harness] {line}")
    print(NOTES[-1], file=sys.stderr)


def acdc_root(source: Path, folder: Path, labelled: list[str]) -> Path:
    """SSL4MIS's layout (`data/slices/*.h5`, `data/*.h5`, the lists) as symbolic links to
    `source`, with the labelled slices first in `train_slices.list` (what SSL4MIS reads as its
    labelled set); the folder name holds "ACDC", which SSL4MIS's `patients_to_slices` needs."""
    root = folder / "ACDC"
    (root / "data" / "slices").mkdir(parents=True, exist_ok=True)
    slices = [s for s in (source / "train_slices.list").read_text().split() if s]
    ordered = labelled + [s for s in slices if s not in set(labelled)]
    for name in slices:
        link = root / "data" / "slices" / f"{name}.h5"
        if not link.exists():
            link.symlink_to((source / "data" / f"{name}.h5").resolve())
    for listing in ("val.list", "test.list"):
        for name in (source / listing).read_text().split():
            link = root / "data" / f"{name}.h5"
            if not link.exists():
                link.symlink_to((source / "data" / f"{name}.h5").resolve())
        shutil.copy(source / listing, root / listing)
    (root / "train_slices.list").write_text("\n".join(ordered) + "\n")
    return root


def labelled_slices(source: Path, protocol: Protocol) -> list[str]:
    """Selection 0: SSL4MIS's first N slices of `train_slices.list` (3 patients: 68)."""
    slices = [s for s in (source / "train_slices.list").read_text().split() if s]
    return slices[: ACDC_LABELLED_SLICES[protocol.labelled_patients]]


def la_root(source: Path, folder: Path, protocol: VolumeProtocol) -> Path:
    """UA-MT's layout (`2018LA_Seg_Training Set/<case>/mri_norm2.h5` beside `train.list` and
    `test.list`) as links to `source`, `train.list` cut to its first volumes: the 10 after them
    are clcc's validation volumes, which the script must not train on (`val.list`, for a
    script that validates)."""
    root = folder / "LA"
    cases = root / "2018LA_Seg_Training Set"
    cases.mkdir(parents=True)
    train = [s for s in (source / "train.list").read_text().split() if s]
    test = [s for s in (source / "test.list").read_text().split() if s]
    for name in train + test:
        (cases / name).symlink_to((source / "2018LA_Seg_Training Set" / name).resolve())
    (root / "train.list").write_text("\n".join(train[: protocol.training_volumes]) + "\n")
    (root / "val.list").write_text("\n".join(train[protocol.training_volumes:]) + "\n")
    shutil.copy(source / "test.list", root / "test.list")
    note(f"train.list: its first {protocol.training_volumes} of {len(train)} volumes "
         f"(the first {protocol.labelled} labelled)")
    return cases


def uamt_la_command(recipe: Recipe, root: Path, protocol: VolumeProtocol, seed: int
                    ) -> list[str]:
    """UA-MT's own arguments at the protocol. Its supervised script stops after iteration
    `max_iterations + 1`, so it is given one fewer."""
    if recipe.supervised_only:
        note(f"train_LA.py runs max_iterations + 1 steps: --max_iterations "
             f"{protocol.iterations - 1}")
        return ["--root_path", str(root), "--exp", "sbs", "--batch_size",
                str(protocol.labelled_batch), "--max_iterations", str(protocol.iterations - 1),
                "--seed", str(seed)]
    note(f"--consistency_rampup {protocol.consistency_rampup:g}: UA-MT's 40 × 150 iterations "
         f"= its 6 000, scaled to {protocol.iterations}")
    return ["--root_path", str(root), "--exp", "sbs", "--batch_size",
            str(protocol.labelled_batch + protocol.unlabelled_batch), "--labeled_bs",
            str(protocol.labelled_batch), "--max_iterations", str(protocol.iterations),
            "--seed", str(seed), "--consistency_rampup", f"{protocol.consistency_rampup:g}"]


def bcp_la_command(root: Path, protocol: VolumeProtocol, seed: int) -> list[str]:
    """BCP's own arguments at the protocol: its two stages share the iterations as clcc's
    `bcp` does (`pretrain`), its unlabelled pool is the training volumes after the labelled."""
    pre = protocol.pretrain_iterations
    note(f"--pre_max_iteration {pre} --self_max_iteration {protocol.iterations - pre}: "
         f"{protocol.pretrain:g} of {protocol.iterations} pre-train, as clcc's bcp")
    return ["--root_path", str(root), "--exp", "sbs", "--pre_max_iteration", str(pre),
            "--self_max_iteration", str(protocol.iterations - pre), "--max_samples",
            str(protocol.training_volumes), "--labelnum", str(protocol.labelled),
            "--labeled_bs", str(protocol.labelled_batch), "--batch_size",
            str(protocol.labelled_batch + protocol.unlabelled_batch), "--seed", str(seed)]


def kvasir_root(prepared: Path, folder: Path, selection: int) -> Path:
    """CLCC-semi's layout (`Kvasir-SEG/{Train,Validation,Test}Dataset/{images,masks}`) as links
    to the images of clcc's prepared split. Its labelled images are a slice of the sorted
    training names (`TRAIN.FOLD`, `DATA.LABEL`): clcc's labelled selection is named `L…` and
    the rest `U…`, so that fold 0 of its share is exactly clcc's selection."""
    manifest = json.loads((prepared / "manifest.json").read_text())
    cases = {c["name"]: c for c in manifest["cases"]}

    def listed(name: str) -> list[str]:
        return (prepared / "splits" / f"{name}.txt").read_text().split()

    labelled = sorted(listed(f"labelled-{selection}"))
    unlabelled = sorted(set(listed("train")) - set(labelled))
    named = {"TrainDataset": [(f"L{k:04d}_{n}", n) for k, n in enumerate(labelled)]
             + [(f"U{k:04d}_{n}", n) for k, n in enumerate(unlabelled)],
             "ValidationDataset": [(n, n) for n in listed("val")],
             "TestDataset": [(n, n) for n in listed("test")]}
    root = folder / "Kvasir-SEG"
    for split, pairs in named.items():
        for kind, key in (("images", "image"), ("masks", "mask")):
            (root / split / kind).mkdir(parents=True)
            for link, name in pairs:
                source = Path(cases[name][key])
                (root / split / kind / f"{link}{source.suffix}").symlink_to(source)
    note(f"Kvasir-SEG layout: clcc's split ({len(labelled) + len(unlabelled)} / "
         f"{len(named['ValidationDataset'])} / {len(named['TestDataset'])}), selection "
         f"{selection}'s {len(labelled)} labelled images named L… (its fold 0)")
    return folder


def clcc_semi_files(checkout: Path, work: Path, data: Path, protocol: ImageProtocol,
                    seed: int) -> list[str]:
    """A copy of CLCC-semi's Kvasir config at the protocol, its folders in the run's."""
    import yaml

    config = yaml.safe_load((checkout / "expconfigs" / "exp_kvasir_pct20.yaml").read_text())
    train_images = len(list((data / "Kvasir-SEG" / "TrainDataset" / "images").iterdir()))
    changes = {
        ("DIRS", "DATA"): str(data), ("DIRS", "WEIGHTS"): str(work / "weights") + "/",
        ("DIRS", "OUTPUTS"): str(work / "outputs") + "/", ("DIRS", "LOGS"): str(work / "logs"),
        ("DIRS", "TEST"): str(work / "output") + "/", ("DATA", "SIZE"): protocol.size,
        ("DATA", "LABEL"): KVASIR_LABELLED / train_images, ("TRAIN", "FOLD"): 0,
        ("TRAIN", "EPOCHS"): protocol.epochs, ("OPT", "WARM_UP"): protocol.stage_epochs,
        ("OPT", "WARMUP_EPOCHS"): protocol.stage_epochs, ("SYSTEM", "SEED"): seed,
        ("SYSTEM", "NUM_WORKERS"): 1}
    for (section, key), value in changes.items():
        note(f"config {section}.{key}: {config.get(section, {}).get(key)!r} -> {value!r}")
        config.setdefault(section, {})[key] = value
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return ["--config", str(work / "config.yaml")]


def bcp_acdc_command(root: Path, protocol: Protocol, seed: int) -> tuple[list[str], dict]:
    """BCP's ACDC arguments at the protocol: its two stages in BCP's proportion."""
    pre = round(protocol.iterations * BCP_PRETRAIN)
    note(f"--pre_iterations {pre} --max_iterations {protocol.iterations - pre}: BCP's 10 000 + "
         f"30 000 scaled to {protocol.iterations}")
    return (["--root_path", str(root), "--exp", "sbs", "--batch_size",
             str(protocol.labelled_batch + protocol.unlabelled_batch), "--labeled_bs",
             str(protocol.labelled_batch), "--labelnum", str(protocol.labelled_patients),
             "--pre_iterations", str(pre), "--max_iterations", str(protocol.iterations - pre),
             "--seed", str(seed)], {"patch_size": [protocol.size, protocol.size]})


def links_to_code(script: Path, cwd: Path) -> None:
    """A working folder of links to the script's code folder: SSL4MIS and UA-MT write
    `../model/<exp>` relative to it and copy it there."""
    cwd.mkdir()
    for entry in script.parent.iterdir():
        (cwd / entry.name).symlink_to(entry)


def ssl4mis_command(recipe: Recipe, root: Path, protocol: Protocol, seed: int, exp: str
                    ) -> tuple[list[str], dict]:
    batch = protocol.labelled_batch + (0 if recipe.supervised_only else protocol.unlabelled_batch)
    args = ["--root_path", str(root), "--exp", exp, "--batch_size", str(batch),
            "--labeled_num", str(protocol.labelled_patients), "--max_iterations",
            str(protocol.iterations), "--seed", str(seed), *recipe.extra_args]
    if not recipe.supervised_only:
        args += ["--labeled_bs", str(protocol.labelled_batch)]
    return args, {"patch_size": [protocol.size, protocol.size]}


def unimatch_files(checkout: Path, recipe: Recipe, work: Path, source_root: Path,
                   labelled: list[str], protocol: Protocol) -> list[str]:
    """A copy of UniMatch's `configs/acdc.yaml` at the protocol, its id lists for the selection
    and, in `splits/acdc/valtest.txt` (which the script reads for validation), the validation
    volumes only: UniMatch validates on val + test merged, which clcc never does."""
    import yaml

    medical = checkout / "more-scenarios" / "medical"
    config = yaml.safe_load((medical / "configs" / "acdc.yaml").read_text())
    changes = {"data_root": str(source_root), "crop_size": protocol.size,
               "batch_size": protocol.labelled_batch, "epochs": unimatch_epochs(protocol)}
    for key, value in changes.items():
        note(f"config {key}: {config.get(key)!r} -> {value!r}")
    config.update(changes)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    splits = work / "splits" / "acdc"
    splits.mkdir(parents=True, exist_ok=True)
    slices = [s for s in (source_root / "train_slices.list").read_text().split() if s]
    (work / "labeled.txt").write_text("".join(f"data/slices/{s}.h5\n" for s in labelled))
    (work / "unlabeled.txt").write_text(
        "".join(f"data/slices/{s}.h5\n" for s in slices if s not in set(labelled)))
    val = (source_root / "val.list").read_text().split()
    (splits / "valtest.txt").write_text("".join(f"data/{v}.h5\n" for v in val))
    note("splits/acdc/valtest.txt: the 20 validation volumes only")
    return ["--config", str(work / "config.yaml"), "--labeled-id-path", str(work / "labeled.txt"),
            "--unlabeled-id-path", str(work / "unlabeled.txt"), "--save-path",
            str(work / "snapshot"), "--port", "0"]



@dataclass(frozen=True)
class Run:
    """What a kind's set-up is given: the recipe, the script in its checkout, the data, the
    run's folders and the protocol (ACDC's, LA's or Kvasir-SEG's, as the kind reads it)."""

    recipe: Recipe
    script: Path
    checkout: Path
    source: Path
    prepared: Path | None
    seed: int
    out: Path
    work: Path
    protocol: Protocol
    volume: VolumeProtocol
    image: ImageProtocol


@dataclass
class Launch:
    """How the script is started: its arguments, from which folder, where it saves, the data
    root its support-file copies name, and the protocol written into `run.json`."""

    args: list[str]
    cwd: Path
    snapshot: Path
    root: Path
    protocol: dict
    env: dict[str, str] = field(default_factory=dict)
    shim_args: dict = field(default_factory=dict)


def _acdc_protocol(run: Run) -> dict:
    return vars(run.protocol) | {"iterations": run.recipe.iterations(run.protocol),
                                 "eval_every": run.recipe.clcc_eval_every(run.protocol)}


def _code_folder(run: Run) -> Path:
    """SSL4MIS, UA-MT and BCP run from (links to) their code folder and save beside it."""
    cwd = run.work / "code"
    links_to_code(run.script, cwd)
    return cwd


def launch_uamt_la(run: Run) -> Launch:
    root = la_root(run.source, run.out / "data", run.volume)
    return Launch(uamt_la_command(run.recipe, root, run.volume, run.seed), _code_folder(run),
                  run.work / "model", root, dataclasses.asdict(run.volume))


def launch_bcp_la(run: Run) -> Launch:
    """BCP writes ./model/BCP/… and reads its lists from the LA folder."""
    root = la_root(run.source, run.out / "data", run.volume).parent
    cwd = _code_folder(run)
    return Launch(bcp_la_command(root, run.volume, run.seed), cwd, cwd / "model", root,
                  dataclasses.asdict(run.volume))


def launch_ssl4mis(run: Run) -> Launch:
    root = acdc_root(run.source, run.out / "data", labelled_slices(run.source, run.protocol))
    args, shim_args = ssl4mis_command(run.recipe, root, run.protocol, run.seed, "sbs")
    return Launch(args, _code_folder(run), run.work / "model", root, _acdc_protocol(run),
                  {"SHIM_VAL_SIZE": str(run.protocol.size)}, shim_args)


def launch_bcp_acdc(run: Run) -> Launch:
    """SSL4MIS's layout; BCP writes ./model/BCP/… and validates with its own `val_2d`."""
    root = acdc_root(run.source, run.out / "data", labelled_slices(run.source, run.protocol))
    args, shim_args = bcp_acdc_command(root, run.protocol, run.seed)
    cwd = _code_folder(run)
    return Launch(args, cwd, cwd / "model", root, _acdc_protocol(run),
                  {"SHIM_VAL_SIZE": str(run.protocol.size), "SHIM_VAL_MODULE": "utils.val_2d"},
                  shim_args)


def launch_clcc_semi(run: Run) -> Launch:
    """clcc's own split of the images, from its prepared set."""
    if run.prepared is None:
        raise SystemExit("clcc-semi: --prepared (clcc's prepared Kvasir-SEG) is needed")
    root = kvasir_root(run.prepared, run.out / "data", run.image.selection)
    return Launch(clcc_semi_files(run.checkout, run.work, root, run.image, run.seed), run.work,
                  run.work / "weights", root, dataclasses.asdict(run.image))


def launch_unimatch(run: Run) -> Launch:
    labelled = labelled_slices(run.source, run.protocol)
    root = acdc_root(run.source, run.out / "data", labelled)
    return Launch(unimatch_files(run.checkout, run.recipe, run.work, root, labelled,
                                 run.protocol),
                  run.work, run.work / "snapshot", root, _acdc_protocol(run),
                  {"SHIM_SEED": str(run.seed)})  # UniMatch's script never seeds


Curve = list[tuple[int, float]]


def no_curve(log_text: str, recipe: Recipe) -> Curve:
    """UA-MT's LA scripts never validate."""
    return []


def epochs_curve(log_text: str, recipe: Recipe) -> Curve:
    """CLCC-semi: "Valid iou: …, dice: …" after every epoch."""
    found = re.findall(r"Valid iou: [\d.]+, dice: ([\d.]+)", log_text)
    per_epoch = recipe.iterations(Protocol()) // KVASIR_SBS.epochs
    return [((k + 1) * per_epoch, 100 * float(d)) for k, d in enumerate(found)]


def bcp_curve(log_text: str, recipe: Recipe) -> Curve:
    """BCP counts each stage's iterations from 1: here counted on through self-training. Its
    ACDC script logs every line twice (two handlers): a repeated point is one validation."""
    curve, offset, last = [], 0, 0
    for line in log_text.splitlines():
        step = re.search(r"iteration (\d+) ?: loss", line)
        if step:
            if int(step.group(1)) < last:  # self-training counts from 1 again
                offset = last
            last = int(step.group(1))
        found = re.search(r"average metric is ([\d.]+)|: mean_dice : ([\d.]+)", line)
        point = (offset + last, 100 * float(found.group(1) or found.group(2))) if found else None
        if point and (not curve or curve[-1] != point):
            curve.append(point)
    return curve


def ssl4mis_curve(log_text: str, recipe: Recipe) -> Curve:
    found = re.findall(r"iteration (\d+) : mean_dice : ([\d.]+)", log_text) or re.findall(
        r"iteration (\d+) : model_mean_dice : ([\d.]+)", log_text)
    return [(int(i), 100 * float(d)) for i, d in found]


def unimatch_curve(log_text: str, recipe: Recipe) -> Curve:
    """"MeanDice: …" after every epoch of its unlabelled loader."""
    epochs = re.findall(r"MeanDice: ([\d.]+)", log_text)
    step = recipe.clcc_eval_every(Protocol())
    return [((k + 1) * step, float(d)) for k, d in enumerate(epochs)]


@dataclass(frozen=True)
class Kind:
    """A kind of script: how it is started, how its log is read, and how its 2-D test images
    are resized for clcc's scoring, and to what size (SSL4MIS, UniMatch and BCP zoom ACDC
    slices with order 0 to the protocol's size; a 3-D script's volumes are scored whole)."""

    launch: Callable[[Run], Launch]
    curve: Callable[[str, Recipe], Curve]
    resample: str = "nearest"
    size: int = Protocol().size


KINDS = {"uamt-la": Kind(launch_uamt_la, no_curve), "bcp-la": Kind(launch_bcp_la, bcp_curve),
         "ssl4mis": Kind(launch_ssl4mis, ssl4mis_curve),
         "bcp-acdc": Kind(launch_bcp_acdc, bcp_curve),
         "clcc-semi": Kind(launch_clcc_semi, epochs_curve, "bilinear", KVASIR_SBS.size),
         "unimatch": Kind(launch_unimatch, unimatch_curve)}
