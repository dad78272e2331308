"""Command line: `clcc data|train|evaluate|predict|export|experiment|report|demo`. Bad input
ends with one clear line (exit status 2), not a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clcc import __version__
from clcc.errors import ClccError

if TYPE_CHECKING:
    from clcc.labels import LabelSpace


def labelled_subset(text: str) -> float:
    """--labelled: a whole count (120) or a fraction in (0, 1) (0.2)."""
    from clcc.data.prepare import check_labelled

    try:
        value = float(text)
        check_labelled(value)
    except (ValueError, ClccError) as err:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a whole count (120) or a fraction between 0 and 1 (0.2)") from err
    return int(value) if value >= 1 else value


def whole_numbers(text: str) -> tuple[int, ...]:
    """Comma-separated whole numbers, e.g. 0,1,2 (at least one)."""
    try:
        numbers = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, "
                                         "e.g. 0,1,2") from err
    if not numbers:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one whole number, e.g. 0,1,2")
    return numbers


def class_names(text: str) -> tuple[str, ...]:
    """Comma-separated class names, e.g. rv,myo,lv."""
    names = tuple(t.strip() for t in text.split(","))
    if not all(names) or len(set(names)) != len(names) or "background" in names:
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct names separated by commas, "
                                         "background (0) aside, e.g. rv,myo,lv")
    return names


def fractions(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, e.g. 0.6,0.2,0.2."""
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: give three numbers separated by commas, "
                                         "e.g. 0.6,0.2,0.2") from err


def probability(text: str) -> float:
    """--threshold: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a probability between 0 and 1, "
                                         "e.g. 0.5")
    return value


def at_threshold(labels: LabelSpace, threshold: float | None, model_file: Path) -> LabelSpace:
    """The model's label space with `--threshold` (a binary model's only)."""
    if threshold is None:
        return labels
    if not labels.binary:
        raise ClccError(f"{model_file}: a model of {labels.classes} classes takes the most "
                        "probable class; --threshold is for a binary model")
    return dataclasses.replace(labels, threshold=threshold)


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from clcc.data.prepare import prepare

    summary = prepare(
        args.kind, args.source, args.output, fractions=args.split, labelled=args.labelled,
        selections=args.selections, split_seed=args.split_seed, size=args.size or None,
        overwrite=args.overwrite, classes=args.classes, resample=args.resample,
    )
    print(f"prepared {args.output}: {' / '.join(_split_sizes(summary))}; "
          f"{_split_sizes(summary, ('labelled',))[0]}, unlabelled {summary['unlabelled']} "
          f"(selections {','.join(map(str, args.selections))})")


def _split_sizes(summary: dict[str, int], splits: tuple[str, ...] = ("train", "val", "test")
                 ) -> list[str]:
    """`train 70 patients (140 volumes, 1312 slices)`, `train 80 volumes (…)` or `train 600`."""
    sizes = []
    for split in splits:
        count, groups, slices = (summary[split], summary.get(f"{split}_groups"),
                                 summary.get(f"{split}_slices"))
        if groups is None:
            sizes.append(f"{split} {count}")
            continue
        parts = [f"{count} volumes"] if groups != count else []
        parts += [f"{slices} slices"] if slices is not None else []
        head = f"{groups} patients" if groups != count else f"{count} volumes"
        sizes.append(f"{split} {head}" + (f" ({', '.join(parts)})" if parts else ""))
    return sizes


def cmd_data_synth(args: argparse.Namespace) -> None:
    from clcc.data.synthetic import write_synthetic

    write_synthetic(args.output, count=args.count, size=args.size, seed=args.seed,
                    classes=args.classes)
    print(f"wrote {args.count} synthetic cases to {args.output}")


def cmd_data_download(args: argparse.Namespace) -> None:
    from clcc.data.download import download

    folder = download(args.name, args.output, url=args.url)
    print(f"downloaded and verified {args.name} in {folder}")


def _load_cfg(args: argparse.Namespace):
    from clcc.config import load_config

    overrides = list(args.set or [])
    if getattr(args, "method", None):
        overrides.append(f"method.name={args.method}")
    return load_config(args.config, overrides)


def cmd_train(args: argparse.Namespace) -> None:
    from clcc.engine.trainer import train

    cfg = _load_cfg(args)
    results = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if results:  # empty on ranks other than 0 under torchrun
        print(_results_line(results))


def _results_line(results: dict) -> str:
    """The test figures of a run: per image (MAE, HD95 in pixels) or per volume (HD95 and ASD
    in voxels)."""
    t = results["test"]
    tail = (f"MAE {100 * t['mae']['mean']:.2f} HD95 {t['hd95']['mean']:.1f}px" if "mae" in t
            else f"HD95 {t['hd95']['mean']:.2f} ASD {t['asd']['mean']:.2f} voxels (per volume)")
    last = results.get("test_last", t)
    return (
        f"{results['run']}: best epoch {results['best_epoch']}; test Dice "
        f"{100 * t['dice']['mean']:.2f}±{100 * t['dice']['std']:.2f} IoU "
        f"{100 * t['iou']['mean']:.2f} {tail}; last weights: test Dice "
        f"{100 * last['dice']['mean']:.2f}"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from clcc.data.sources import labelled_pairs
    from clcc.engine.evaluate import (
        checkpoint_data,
        evaluate_prepared,
        pool_inputs,
        recalibrate_batchnorm,
        write_per_image_csv,
    )
    from clcc.engine.predict import evaluate_cases, load_trained_model
    from clcc.files import OUTPUT_MARKER, claim, mark, staged_into, write_json

    if (args.images is None) != (args.masks is None):
        raise ClccError("--images and --masks go together (a folder of images and one of masks)")
    if args.native_resolution and args.images is None:
        raise ClccError("--native-resolution needs --images and --masks")
    cfg, model, runtime = load_trained_model(args.checkpoint, args.device, args.precision)
    model.labels = at_threshold(model.labels, args.threshold, args.checkpoint)
    data = (checkpoint_data(cfg, model, args.checkpoint, args.data)
            if args.recalibrate_bn or args.images is None else None)
    if cfg.model.spatial_dims == 3 and args.images is not None:
        raise ClccError(f"{args.checkpoint}: a 3-D model is evaluated on a prepared set's "
                        "volumes (--data), without --images")
    if args.recalibrate_bn:
        recalibrate_batchnorm(model, pool_inputs(data, runtime))
        model.eval()
    if args.images is not None:
        cases = labelled_pairs(args.images, args.masks)
        rows, summary = evaluate_cases(model, cases, cfg.data.size, runtime, cfg.data.resample,
                                       native=args.native_resolution)
        what = Path(args.images).resolve().name + ("-native" if args.native_resolution else "")
    else:
        splits = ("train", "val", "test") if args.split == "all" else (args.split,)
        names = [n for split in splits for n in data.subset(split)]
        rows, summary = evaluate_prepared(model, data, names, runtime)
        what = args.split
    out = Path(args.output or Path(args.checkpoint).parent / f"evaluate-{what}")
    claim(out, "evaluate", inputs=[args.checkpoint, args.images, args.masks, args.data])
    with staged_into(out, last=OUTPUT_MARKER) as tmp:
        write_per_image_csv(tmp / "per_image.csv", rows)
        write_json(tmp / "summary.json", summary)
        mark(tmp, "evaluate", checkpoint=str(Path(args.checkpoint).resolve()),
             threshold=model.labels.threshold if model.labels.binary else None)
    if args.threshold is not None:
        print(f"foreground where its probability > {args.threshold}")
    volumes = data is not None and data.volumes and args.images is None
    print(f"{len(rows)} volumes, each scored in 3-D at its own resolution" if volumes else
          f"{len(rows)} images" + (" at their own resolution" if args.native_resolution else
                                   f" at {cfg.data.size}×{cfg.data.size}"))
    for name, v in summary.items():
        scale = 1 if name.startswith(("hd95", "asd")) else 100
        print(f"{name:>9}: {scale * v['mean']:.2f} ± {scale * v['std']:.2f}")
    print(f"per-{'volume' if volumes else 'image'} metrics: {out / 'per_image.csv'}")


def cmd_predict(args: argparse.Namespace) -> None:
    from clcc.engine.predict import Predictor, load_trained_model, predict_folder

    if (args.checkpoint is None) == (args.onnx is None):
        raise ClccError("predict needs exactly one of --checkpoint and --onnx")
    if args.onnx is not None:
        predictor = Predictor.from_onnx(args.onnx)
    else:
        cfg, model, runtime = load_trained_model(args.checkpoint, args.device)
        predictor = Predictor.from_model(model, cfg.data.size, runtime, cfg.data.resample,
                                         cfg.data.patch, cfg.data.window_overlap,
                                         cfg.data.spacing)
    predictor.labels = at_threshold(predictor.labels, args.threshold, args.onnx or args.checkpoint)
    written, skipped = predict_folder(
        predictor, args.input, args.output, overlays=args.overlay,
        probabilities=args.probabilities, model_file=args.onnx or args.checkpoint,
    )
    print(f"wrote {len(written)} masks (label volumes for NIfTI inputs) to {args.output}")
    if skipped:
        from clcc.data.images import IMAGE_SUFFIXES

        names = ", ".join(p.name for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} file(s) that are not images by their suffix "
              f"({', '.join(IMAGE_SUFFIXES)}): {names}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from clcc.experiment import run_grid

    run_grid(args.config, list(args.set or []), args.methods.split(),
             list(args.selections), Path(args.output), jobs=args.jobs,
             report=not args.no_report, reference=args.reference, overwrite=args.overwrite,
             time_budget_s=None if args.time_budget is None else 60 * args.time_budget,
             order=args.order)


def cmd_report(args: argparse.Namespace) -> None:
    from clcc.report.build import build_report

    print(f"wrote {build_report(args.experiment, reference=args.reference)}")


def cmd_export(args: argparse.Namespace) -> None:
    from clcc.engine.export import export_onnx
    from clcc.engine.predict import load_trained_model

    cfg, model, _ = load_trained_model(args.checkpoint, "cpu")
    export_onnx(model, cfg.data.size, args.output, checkpoint=args.checkpoint,
                resample=cfg.data.resample, patch=cfg.data.patch, ct=model.ct,
                spacing=cfg.data.spacing)
    heads = model.labels.heads
    what = "foreground probability" if heads == 1 else f"probabilities of {heads} classes"
    if model.spatial_dims == 3:
        print(f"wrote {args.output} (input: z-scored intensities N×1×D×H×W with D, H, W "
              f"divisible by {model.divisor}; output: {what} N×{heads}×D×H×W; trained on "
              f"patches of {'×'.join(map(str, cfg.data.patch))})")
        return
    print(f"wrote {args.output} (input: float RGB in [0, 1], N×3×H×W with H, W divisible by "
          f"{model.divisor}; output: {what} N×{heads}×H×W; trained at {cfg.data.size})")


def cmd_demo(args: argparse.Namespace) -> None:
    from clcc.demo import DEMO_METHODS, run_demo

    run_demo(Path(args.workdir), methods=(args.methods or DEMO_METHODS).split(), epochs=args.epochs,
             jobs=args.jobs)


class _PrintVersion(argparse.Action):
    """`clcc --version`, with torch's version for bug reports; torch is imported only then."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        import platform

        import torch

        print(f"clcc {__version__} (torch {torch.__version__}, Python {platform.python_version()})")
        parser.exit()


class _MethodsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, and fills "{methods}" with the registered methods,
    importing them (and torch) only when the help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or isinstance(
                action, argparse._HelpAction):
            return action.help  # nothing worth showing: an unset option or a plain switch
        return super()._get_help_string(action)

    def _expand_help(self, action: argparse.Action) -> str:
        text = super()._expand_help(action)
        if "{methods}" in text:
            from clcc.methods import METHODS

            text = text.replace("{methods}", ", ".join(sorted(METHODS)))
        return text

    def _format_text(self, text: str) -> str:
        if "{method_parameters}" not in text:
            return super()._format_text(text)
        from clcc.methods import METHODS
        from clcc.methods.base import parameter_listing

        lines = [f"  {name}: {parameter_listing(name)}" for name in sorted(METHODS)]
        return ("method parameters (--set method.params.NAME=VALUE):\n" + "\n".join(lines)
                + "\n\n")


def _add_device_and_threshold(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs a trained model on images."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--threshold", type=probability, metavar="P",
                   help="a binary model's foreground from probability > P (default 0.5)")


def build_parser() -> argparse.ArgumentParser:
    from clcc.data.layouts import LAYOUTS

    parser = argparse.ArgumentParser(prog="clcc", description=__doc__,
                                     formatter_class=_MethodsHelpFormatter)
    parser.add_argument("--version", action=_PrintVersion, help="show versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_MethodsHelpFormatter)

    data = sub.add_parser("data", help="prepare, generate or download data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dsub.add_parser = functools.partial(dsub.add_parser, formatter_class=_MethodsHelpFormatter)
    p = dsub.add_parser("prepare", help="raw layout → prepared data set (splits + cache)")
    p.add_argument("kind", choices=list(LAYOUTS),
                   help="the raw layout: acdc (SSL4MIS's HDF5 or the NIfTI release), nnunet "
                        "(a raw nnU-Net data set), folder (images/ and masks/: 2-D images or "
                        "NIfTI volumes)")
    p.add_argument("--source", required=True, type=Path, help="the raw data set folder")
    p.add_argument("--output", required=True, type=Path,
                   help="the prepared set to write (new, empty, or prepared before)")
    p.add_argument("--split", type=fractions, default=(0.6, 0.2, 0.2),
                   help="train,val,test (drawn by patient/volume; acdc keeps SSL4MIS's split)")
    p.add_argument("--labelled", type=labelled_subset, default=0.2,
                   help="labelled subset of train: a count (120; of patients for acdc, of "
                        "volumes for volume sets) or a fraction (0.2)")
    p.add_argument("--selections", type=whole_numbers, default=(0, 1, 2),
                   help="selection seeds of the labelled subset")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--size", type=int, default=320, help="cache resolution (0: no cache yet)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a prepared set made from another source")
    p.add_argument("--classes", type=class_names, metavar="NAME,NAME,...",
                   help="foreground classes of label-map masks, values 1, 2, … (0 is "
                        "background), e.g. rv,myo,lv; without it masks are binary")
    p.add_argument("--resample", default="bilinear", choices=["bilinear", "nearest"],
                   help="how the cache resizes images (the config's data.resample must match, "
                        "or training builds its own cache): nearest as SSL4MIS zooms ACDC")
    p.set_defaults(func=cmd_data_prepare)
    p = dsub.add_parser("synth", help="write the embedded synthetic data set")
    p.add_argument("--output", type=Path, default=Path("data/synthetic"),
                   help="folder to write (new, empty, or written by data synth)")
    p.add_argument("--count", type=int, default=160, help="number of cases")
    p.add_argument("--size", type=int, default=96, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--classes", type=int, default=2,
                   help="classes, background included: 2 writes binary masks, more writes "
                        "label maps (prepare them with --classes c1,c2,...)")
    p.set_defaults(func=cmd_data_synth)
    p = dsub.add_parser("download", help="fetch and verify an official archive")
    p.add_argument("name", choices=["kvasir-seg"])
    p.add_argument("--output", type=Path, default=Path("data/raw/kvasir-seg"),
                   help="folder to extract into (new, empty, or downloaded into before)")
    p.add_argument("--url", help="a mirror or file:// address instead of the official one")
    p.set_defaults(func=cmd_data_download)

    p = sub.add_parser("train", help="train one method on one labelled selection",
                       epilog="{method_parameters}")
    p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults)")
    p.add_argument("--method", help="shorthand for --set method.name=...; one of {methods}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, repeatable")
    p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run first")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a checkpoint on a split")
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt or last.pt of a run")
    p.add_argument("--data", type=Path, help="prepared data set (default: the training one)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="split of the prepared set (all: every image with a mask)")
    p.add_argument("--images", type=Path, help="a folder of images to score instead (with --masks)")
    p.add_argument("--masks", type=Path, help="their masks, matched by file stem")
    p.add_argument("--native-resolution", action="store_true",
                   help="score at each image's own size (prediction resized back)")
    p.add_argument("--recalibrate-bn", action="store_true",
                   help="first re-estimate BatchNorm statistics on the training images")
    p.add_argument("--output", type=Path,
                   help="folder for per_image.csv and summary.json (default: beside the "
                        "checkpoint, evaluate-SPLIT)")
    p.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (autocast)")
    _add_device_and_threshold(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="masks for a folder of new images")
    p.add_argument("--checkpoint", type=Path, help="best.pt or last.pt of a run")
    p.add_argument("--onnx", type=Path, help="an exported model, run with onnxruntime")
    p.add_argument("--input", required=True, type=Path,
                   help="folder of images (any size and format) or NIfTI volumes (.nii.gz)")
    p.add_argument("--output", required=True, type=Path,
                   help="folder for the masks (new, empty, or written by predict)")
    p.add_argument("--overlay", action="store_true", help="also write overlays/ (2-D images)")
    p.add_argument("--probabilities", action="store_true",
                   help="also write probabilities/ (a PNG or a float32 NIfTI per class)")
    _add_device_and_threshold(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("experiment", help="methods × labelled selections → runs → tables")
    p.add_argument("--config", type=Path, help="YAML config every run starts from")
    p.add_argument("--methods", required=True,
                   help="space-separated entries, e.g. 'supervised clcc clcc:alpha=0'")
    p.add_argument("--selections", type=whole_numbers, default=(0, 1, 2),
                   help="labelled selections to train, each prepared beforehand")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, repeatable")
    p.add_argument("--output", required=True, type=Path,
                   help="the experiment folder (runs and tables)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs side by side (on CPU 1 thread each; on a GPU sharing the card)")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain runs whose folder was made with another config")
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="start only runs that can finish by then (timed by the finished runs of "
                        "the same method), stop the running ones there (they resume later); "
                        "0: the tables of the finished runs only")
    p.add_argument("--order", default="methods", choices=["methods", "selections"],
                   help="which runs go first: all selections of a method, or all methods of a "
                        "selection")
    p.add_argument("--no-report", action="store_true", help="tables only, no figures/HTML")
    p.add_argument("--reference", metavar="METHOD",
                   help="the method every other one is paired with (default: the first)")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("report", help="(re)build the figures and HTML report of an experiment")
    p.add_argument("--experiment", required=True, type=Path,
                   help="an experiment folder (with table.json)")
    p.add_argument("--reference", metavar="METHOD",
                   help="the method every other one is paired with (default: the first)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (dynamic batch and size)")
    p.add_argument("--checkpoint", required=True, type=Path, help="best.pt or last.pt of a run")
    p.add_argument("--output", required=True, type=Path, help="the .onnx file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="supervised vs CLCC on the synthetic data, 3 selections")
    p.add_argument("--workdir", default="runs/demo", help="folder for data, runs and tables")
    p.add_argument("--methods", default=None,
                   help="space-separated entries, as for `clcc experiment` (default: "
                        "supervised, CLCC, CLCC with the BatchNorm remedies)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 40)")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.set_defaults(func=cmd_demo)
    return parser


def resume_hint(argv: list[str]) -> str:
    """What to run after an interrupt: `train` continues only with --resume."""
    if argv[:1] == ["train"]:
        words = argv if "--resume" in argv else [*argv, "--resume"]
        return "rerun `clcc " + " ".join(shlex.quote(w) for w in words) + "` to continue"
    return "rerun the same command to resume"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ClccError as err:
        print(f"clcc: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only folder or mount, a full disk, a path of the wrong kind
        where = err.filename or Path.cwd()
        what = "the disk is full" if err.errno == errno.ENOSPC else err.strerror or err
        print(f"clcc: error: {where}: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clcc: interrupted; {resume_hint(argv)} (finished work is kept)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
