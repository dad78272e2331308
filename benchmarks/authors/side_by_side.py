"""Train an authors' script and clcc's same method at one protocol, score both with clcc.

    # the authors' side (their environment: a torch/torchvision pair of its own, see README)
    python benchmarks/authors/side_by_side.py authors unimatch-fixmatch \
        --checkout ../authors/UniMatch --python ../authors-env/bin/python \
        --source ../shared/data/acdc --seed 0 --out ../sbs/unimatch-fixmatch-authors-s0
    # clcc's side, on the set `clcc data prepare acdc ... --labelled 3 --size 128` made
    python benchmarks/authors/side_by_side.py clcc unimatch-fixmatch \
        --prepared ../sbs/acdc-3-128 --seed 0 --out ../sbs/unimatch-fixmatch-clcc-s0
    # score the checkpoint each side chose on the 40 test volumes, per volume, with clcc
    python benchmarks/authors/side_by_side.py score ../sbs/unimatch-fixmatch-authors-s0 \
        --prepared ../sbs/acdc-3-128

The authors' code runs unedited from its checkout (never copied into this repository); the
shim in `shim/` changes device, threads, distribution and protocol arguments and prints each
change into the run's log. Every run folder gets `run.json` (command, commit, shim changes,
wall time, validation curve) beside the log; `score` adds `per_volume.csv` and `summary.json`
(with `--recalibrate-bn`, also the score with BatchNorm statistics re-estimated on the training
pool, the same for both sides).
`collect` copies those small files (never checkpoints) into the repository's evidence folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kinds import KINDS, NOTES, Run, note  # noqa: E402
from recipes import KVASIR_SBS, RECIPES, Protocol, Recipe, bcp_la_reduction  # noqa: E402

SHIM = HERE / "shim"
RECALIBRATED_CSV = "per_volume_recalibrated_bn.csv"
EVIDENCE_FILES = ("run.json", "train.log", "per_volume.csv", "summary.json", "validation.csv",
                  "script.diff", "config.yaml", RECALIBRATED_CSV,
                  # clcc's side: its own record, which the LA quick table reads
                  "results.json", "metrics.jsonl", "val_per_image.csv", "test_per_image.csv",
                  "test_last_per_image.csv")


def commit_of(checkout: Path) -> str:
    """The checkout's commit, or what the fetch tool recorded where the work tree has no .git."""
    found = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                           capture_output=True, text=True)
    return found.stdout.strip() or "unknown (no git metadata in the checkout)"


def patched_copy(source: Path, replacements: tuple[tuple[str, str], ...], copy: Path,
                 work: Path) -> None:
    """`source` copied to `copy` with each replacement, which must match exactly once; the
    diff is added to the run's `script.diff` and printed."""
    text = original = source.read_text()
    for old, new in replacements:
        if text.count(old) != 1:
            raise SystemExit(f"{source}: the line to reduce was not found once: {old}")
        text = text.replace(old, new)
    assert original != text and not copy.exists()  # never through a link into a checkout
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)
    diff = subprocess.run(["diff", "-u", str(source), str(copy)], capture_output=True,
                          text=True).stdout
    with open(work / "script.diff", "a") as out:
        out.write(diff)
    note(f"reduced copy of {source.name} (script.diff): "
         + " | ".join(line for line in diff.splitlines()
                      if line[:1] in "+-" and line[:3] not in ("+++", "---")))


def patched_script(script: Path, recipe: Recipe, work: Path, root: Path) -> Path:
    """The script itself, or (for a reduction) a copy in the run folder. Each file the recipe
    names in `support` is copied, reduced, beside the copy, in a folder of links to the rest of
    its own folder: the script's folder comes first on its import path, so the copy wins."""
    if not recipe.patch:
        return script
    for relative, replacements in recipe.support:
        filled = tuple((old, new.replace("{root}", str(root))) for old, new in replacements)
        patched_copy(script.parent / relative, filled, work / relative, work)
    for relative, _ in recipe.support:  # then links to the rest, never over a copy
        folder = work / Path(relative).parent
        for entry in (script.parent / relative).parent.iterdir():
            if not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    copy = work / script.name
    patched_copy(script, recipe.patch, copy, work)
    return copy


def run_authors(args: argparse.Namespace) -> None:
    recipe = RECIPES[args.recipe]
    NOTES.clear()
    volume = dataclasses.replace(recipe.volume,
                                 iterations=args.iterations or recipe.volume.iterations)
    if args.iterations and recipe.kind == "bcp-la":  # a smoke run: validate once pre-training
        volume = dataclasses.replace(volume, eval_every=volume.pretrain_iterations)  # is done
        recipe = dataclasses.replace(recipe, patch=bcp_la_reduction(volume))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=False)
    checkout = args.checkout.resolve()
    script = checkout / recipe.script
    work = out / "work"
    work.mkdir()
    run = Run(recipe, script, checkout, args.source.resolve(),
              args.prepared.resolve() if args.prepared else None, args.seed, out, work,
              Protocol(iterations=args.iterations or Protocol.iterations), volume,
              dataclasses.replace(KVASIR_SBS, epochs=args.iterations or KVASIR_SBS.epochs))
    launch = KINDS[recipe.kind].launch(run)
    env = {**os.environ, "SHIM_ACTIVE": "1", "SHIM_THREADS": str(args.threads),
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(SHIM), str(script.parent)]),
           "PYTHONUNBUFFERED": "1", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "SHIM_PORT": str(29500 + (os.getpid() % 500)), **launch.env,
           "SHIM_ARGS": json.dumps(launch.shim_args)}
    runnable = patched_script(script, recipe, work, launch.root)
    command = [str(args.python), str(runnable), *launch.args]
    note(" ".join(command))
    commit = commit_of(checkout)
    start = time.time()
    with open(out / "train.log", "w") as log:
        log.write("".join(f"{line}\n" for line in NOTES))
        log.flush()
        result = subprocess.run(command, cwd=launch.cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    wall = time.time() - start
    log_text = (out / "train.log").read_text(errors="replace")
    checkpoints = sorted(launch.snapshot.rglob(
        recipe.checkpoint.format(iterations=volume.iterations)))
    record = {
        "side": "authors", "recipe": args.recipe, "repo": recipe.repo, "script": recipe.script,
        "commit": commit, "command": command, "seed": args.seed,
        "threads": args.threads, "protocol": launch.protocol,
        "shim": [line for line in log_text.splitlines()
                 if line.startswith(("[shim]", "[harness]"))],
        "returncode": result.returncode, "wall_s": round(wall, 1),
        "checkpoint": str(checkpoints[0]) if checkpoints else None,
        "python": subprocess.run([str(args.python), "-c", "import torch, torchvision; "
                                  "print(torch.__version__, torchvision.__version__)"],
                                 capture_output=True, text=True).stdout.strip(),
        "cpu": cpu_model(),
    }
    write_validation(out, KINDS[recipe.kind].curve(log_text, recipe))
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[harness] exit {result.returncode} after {wall:.0f} s; "
          f"checkpoint {record['checkpoint']}")
    if result.returncode:
        raise SystemExit(result.returncode)


def write_validation(out: Path, curve: list[tuple[int, float]]) -> None:
    (out / "validation.csv").write_text(
        "iteration,val_dice\n" + "".join(f"{i},{d:.4f}\n" for i, d in curve))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def clcc_overrides(args: argparse.Namespace) -> list[str]:
    """The `--set`s of clcc's side: the recipe's protocol, then the recipe's own, then the
    caller's. fp32, as every authors' script trains: clcc's `auto` precision is bf16 autocast
    on a CPU with AMX or AVX512-BF16, which is not the computation being compared."""
    recipe = RECIPES[args.recipe]
    protocol = Protocol(iterations=args.iterations or Protocol.iterations)
    out = args.out.resolve()
    overrides = [f"data.root={args.prepared.resolve()}", f"method.name={recipe.clcc_method}",
                 f"train.seed={args.seed}", f"train.output={out.parent}",
                 f"train.name={out.name}", f"train.threads={args.threads}",
                 "train.precision=fp32"]
    if recipe.volumetric:  # la-quick.yaml holds the protocol: patch, batches, validation
        overrides.append(f"train.iterations={args.iterations or recipe.volume.iterations}")
    elif recipe.kind != "clcc-semi":  # (CLCC-semi: its config and overrides hold it)
        overrides += [
            f"data.size={protocol.size}", f"train.iterations={recipe.iterations(protocol)}",
            f"train.eval_every={recipe.clcc_eval_every(protocol)}",
            f"train.labelled_batch={protocol.labelled_batch}",
            f"train.unlabelled_batch={protocol.unlabelled_batch}"]
    overrides += [*recipe.clcc_overrides, *args.set]
    if args.iterations and recipe.kind == "clcc-semi":  # a smoke run: epochs, as the authors'
        overrides.append(f"train.epochs={args.iterations}")
    return overrides


def run_clcc(args: argparse.Namespace) -> None:
    recipe = RECIPES[args.recipe]
    out = args.out.resolve()
    overrides = clcc_overrides(args)
    clcc = Path(sys.executable).with_name("clcc")
    config = args.config or HERE.parents[1] / "configs" / recipe.config
    command = [str(clcc), "train", "--config", str(config)]
    for item in overrides:
        command += ["--set", item]
    print("[harness] " + " ".join(command), file=sys.stderr)
    commit = commit_of(HERE)  # read before the run: a commit made while it trains is not its code
    start = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - start
    if result.returncode:  # e.g. the run is another process's: leave its folder alone
        print(f"[harness] exit {result.returncode} after {wall:.0f} s\n"
              f"{result.stderr[-2000:]}", file=sys.stderr)
        raise SystemExit(result.returncode)
    (out / "train.log").write_text(result.stdout + result.stderr)
    curve = clcc_validation(out)
    write_validation(out, curve)
    record = {"side": "clcc", "recipe": args.recipe, "method": recipe.clcc_method,
              "command": command, "seed": args.seed, "threads": args.threads,
              "commit": commit, "returncode": result.returncode,
              "wall_s": round(wall, 1), "cpu": cpu_model(),
              # UA-MT tests its last weights; the others their best on validation
              "checkpoint": str(out / recipe.clcc_checkpoint)}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[harness] exit 0 after {wall:.0f} s")


def clcc_validation(out: Path) -> list[tuple[int, float]]:
    """(iteration, validation Dice in %) from a clcc run's metrics log."""
    metrics = out / "metrics.jsonl"
    if not metrics.is_file():
        return []
    curve = []
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "val/dice" in row:
            curve.append((int(row.get("val_step", row["step"])), 100 * row["val/dice"]))
    return curve


def open_run(folder: Path, prepared: Path) -> tuple:
    """(record, recipe, model, data, runtime, resample) of a run folder: the checkpoint it
    chose, loaded into clcc's network, and the prepared set at the size both sides trained."""
    from clcc.config import load_config
    from clcc.data.prepare import PreparedData
    from clcc.data.volume_data import open_prepared
    from clcc.engine.predict import load_trained_model
    from clcc.engine.runtime import make_runtime
    from clcc.models.authors_weights import load_authors_model

    record = json.loads((folder / "run.json").read_text())
    recipe = RECIPES[record["recipe"]]
    if record["side"] == "clcc":
        cfg, model, runtime = load_trained_model(Path(record["checkpoint"]), "cpu")
        resample = cfg.data.resample
    else:
        resample = KINDS[recipe.kind].resample
        runtime = make_runtime("cpu", "fp32")
        cfg = load_config(HERE.parents[1] / "configs" / recipe.config)
    if recipe.volumetric:  # whole volumes, clcc's sliding window of the la-quick patch
        patch = cfg.data.patch if record["side"] == "clcc" else recipe.volume.clcc_patch
        data = open_prepared(prepared, 3, 0, patch=tuple(patch),
                             overlap=cfg.data.window_overlap)
    else:  # slices of volumes (ACDC) or images (Kvasir-SEG), at the size both trained
        data = PreparedData.open(prepared, KINDS[recipe.kind].size, resample)
    if record["side"] != "clcc":
        model = load_authors_model(Path(record["checkpoint"]), data.labels, data.channels)
    return record, recipe, model, data, runtime, resample


def re_estimate_batchnorm(model: Any, data: Any, runtime: Any, cases: Any = None) -> None:
    """Every BatchNorm's statistics as the plain average over the training pool (or `cases`),
    dropout off (`recalibrate_batchnorm`): the same for an authors' checkpoint, loaded without
    dropout layers, as for clcc's, which has them; then eval mode."""
    from clcc.engine.evaluate import pool_inputs, recalibrate_batchnorm

    recalibrate_batchnorm(model, pool_inputs(data, runtime, cases))
    model.eval()


def score(args: argparse.Namespace) -> None:
    """clcc's per-volume test metrics of the checkpoint the run chose."""
    import torch

    from clcc.engine.evaluate import evaluate_prepared, write_per_image_csv

    torch.set_num_threads(args.threads)
    record, recipe, model, data, runtime, resample = open_run(args.run, args.prepared)
    if record["side"] == "clcc":
        write_validation(args.run, clcc_validation(args.run))  # from the run's own log
    else:
        log_text = (args.run / "train.log").read_text(errors="replace")
        write_validation(args.run, KINDS[recipe.kind].curve(log_text, recipe))  # as clcc's
    rows, summary = evaluate_prepared(model, data, data.subset("test"), runtime)
    write_per_image_csv(args.run / "per_volume.csv", rows)
    unit = "volumes" if data.volumes else "images"
    print(f"{args.run.name}: test Dice {100 * summary['dice']['mean']:.2f} over {len(rows)} {unit}")
    summary = {**summary, "resample": resample}
    if args.recalibrate_bn:  # the weights alone: BatchNorm statistics of the training pool
        re_estimate_batchnorm(model, data, runtime)
        rows, summary["recalibrated_bn"] = evaluate_prepared(model, data, data.subset("test"),
                                                             runtime)
        write_per_image_csv(args.run / RECALIBRATED_CSV, rows)
        print(f"{args.run.name}: with BatchNorm re-estimated on the training pool "
              f"{100 * summary['recalibrated_bn']['dice']['mean']:.2f}")
    (args.run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def collect(args: argparse.Namespace) -> None:
    """Copy a run's small files into the evidence folder (no checkpoint, no data)."""
    target = args.evidence / args.run.name
    target.mkdir(parents=True, exist_ok=True)
    for name in EVIDENCE_FILES:
        for found in [args.run / name, args.run / "work" / name]:
            if found.is_file():
                shutil.copy(found, target / name)
                break
    print(f"{target}: {sorted(p.name for p in target.iterdir())}")


BEGIN, END = "<!-- fidelity:begin -->", "<!-- fidelity:end -->"


def report(args: argparse.Namespace) -> None:
    """The tables of every collected run, written between the markers of docs/fidelity.md (the
    rest of the page is prose); with `--figure`, their validation curves drawn there (kept out
    of the repository: a figure made from real data)."""
    from clcc.report.fidelity import (
        curves_figure,
        curves_table,
        fidelity_rows,
        markdown_table,
        read_runs,
        runs_table,
    )

    runs = read_runs(args.evidence)
    shared = {name: r.clcc_runs_of for name, r in RECIPES.items() if r.clcc_runs_of}
    if args.figure:
        curves_figure(runs, args.figure, shared)
    block = "\n\n".join([BEGIN, markdown_table(fidelity_rows(runs, shared)),
                          "The same with BatchNorm statistics re-estimated on the training "
                          "pool, dropout off (`score --recalibrate-bn`; the runs scored so, "
                          "session 17 on):",
                          markdown_table(fidelity_rows(runs, shared, recalibrated=True)),
                          "Every run:",
                          runs_table(runs), "The validation curves of the pooled runs "
                          "(`side_by_side.py report --figure PATH` draws them; a figure of "
                          "real-data runs, not kept here):", curves_table(runs, shared), END])
    text = args.doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.doc}: no {BEGIN} … {END} block to fill")
    head, rest = text.split(BEGIN, 1)
    args.doc.write_text(head + block + rest.split(END, 1)[1])
    print(f"{args.doc}: {len(runs)} runs" + (f"; {args.figure}" if args.figure else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    authors = verbs.add_parser("authors", help="train with the authors' script")
    authors.add_argument("recipe", choices=sorted(RECIPES))
    authors.add_argument("--checkout", type=Path, required=True)
    authors.add_argument("--python", type=Path, required=True,
                         help="the authors' environment (torch + torchvision pair)")
    authors.add_argument("--source", type=Path, required=True,
                         help="SSL4MIS's ACDC folder, or UA-MT's `data` folder for LA")
    authors.add_argument("--seed", type=int, default=0)
    authors.add_argument("--threads", type=int, default=1)
    authors.add_argument("--out", type=Path, required=True)
    authors.add_argument("--iterations", type=int,
                         help="shorter for a smoke test only (CLCC-semi: epochs)")
    authors.add_argument("--prepared", type=Path,
                         help="clcc's prepared set whose split the run uses (CLCC-semi)")
    ours = verbs.add_parser("clcc", help="train clcc's same method at the same protocol")
    ours.add_argument("recipe", choices=sorted(RECIPES))
    ours.add_argument("--prepared", type=Path, required=True)
    ours.add_argument("--config", type=Path,
                      help="default: the recipe's (configs/acdc-quick.yaml, la-quick.yaml)")
    ours.add_argument("--seed", type=int, default=0)
    ours.add_argument("--threads", type=int, default=1)
    ours.add_argument("--set", action="append", default=[], help="a further clcc override")
    ours.add_argument("--out", type=Path, required=True)
    ours.add_argument("--iterations", type=int,
                      help="shorter for a smoke test only (CLCC-semi: epochs)")
    scorer = verbs.add_parser("score", help="clcc's per-volume test metrics of a run's checkpoint")
    scorer.add_argument("run", type=Path)
    scorer.add_argument("--prepared", type=Path, required=True)
    scorer.add_argument("--threads", type=int, default=1)
    scorer.add_argument("--recalibrate-bn", action="store_true",
                        help="also score the weights with BatchNorm statistics re-estimated on "
                             "the training pool (tells the weights from the running statistics)")
    keeper = verbs.add_parser("collect", help="copy a run's small files into the evidence")
    keeper.add_argument("run", type=Path)
    keeper.add_argument("--evidence", type=Path,
                        default=HERE.parents[1] / "evidence" / "side-by-side")
    reporter = verbs.add_parser("report", help="fill docs/fidelity.md's tables")
    reporter.add_argument("--figure", type=Path, help="also draw the validation curves here")
    reporter.add_argument("--evidence", type=Path,
                          default=HERE.parents[1] / "evidence" / "side-by-side")
    reporter.add_argument("--doc", type=Path, default=HERE.parents[1] / "docs" / "fidelity.md")
    args = parser.parse_args()
    {"authors": run_authors, "clcc": run_clcc, "score": score, "collect": collect,
     "report": report}[args.verb](args)


if __name__ == "__main__":
    main()
