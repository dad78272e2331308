"""The training loop, written once for every method.

Per step: draw 4 labelled + 4 unlabelled images (host, uint8) → device → normalise → augment
on the device → `method.training_step` under autocast → backward → optimiser step (AdamW, or
SGD) → schedule step (every step) → `method.after_step` (EMA). A run lasts `epochs`, or
`iterations` steps when its config counts in steps (SSL4MIS's protocol; the last epoch is then
cut short). Every `eval_every` epochs (steps) the method's eval model is validated — per 3-D
volume on a volume set; the best validation Dice decides `best.pt`. `last.pt` is written after
every epoch and holds everything to resume exactly: a resumed run ends with the same weights as
an uninterrupted one (batch order and augmentation are seeded per epoch; the global RNG is saved).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from clcc.config import Config, OptimConfig, config_differences, dump_config
from clcc.data.augment import augment_batch
from clcc.data.loaders import TrainBatches, epoch_generator, to_input, to_target
from clcc.data.prepare import DataIdentity
from clcc.data.volume_data import PatchBatches, open_configured
from clcc.data.volume_data import to_device as to_volume_device
from clcc.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from clcc.engine.distributed import (
    all_reduce_sum,
    barrier,
    close_distributed,
    init_distributed,
    parameters_in_sync,
)
from clcc.engine.evaluate import (
    evaluate_prepared,
    pool_inputs,
    recalibrate_batchnorm,
    write_per_image_csv,
)
from clcc.engine.logging import MetricsLog
from clcc.engine.predict import load_trained_model
from clcc.engine.run_folder import claim_run_dir
from clcc.engine.runtime import Runtime, environment, make_runtime
from clcc.errors import ClccError
from clcc.files import exclusive, write_json, write_text
from clcc.methods import Method, build_method, resolved_parameters

AUGMENT_STREAM = 1  # the augmentation generator is seeded apart from the batch order


AUTHORS_STEP = 7
"""The step of each epoch at which the authors' code evaluates its schedule (`utils/run.py`: the
step index is shadowed by an inner loop, so the schedule sees epoch · iters + 7)."""


POLY_POWER = 0.9  # SSL4MIS, UniMatch, BCP: lr·(1 − s/S)^0.9
STEP_GAMMA = 0.1  # UA-MT: lr·0.1^(s // 2500)


def lr_lambda(warmup: int, total: int, schedule: str, per: int = 1, shape: str = "linear",
              step_every: int = 2500):
    """Multiplier of the base learning rate at optimiser step `s`: warm-up over `warmup` units,
    then cosine (or poly) to 0 at `total` units, where a unit is `per` steps (1: every step;
    the steps of an epoch: once per epoch, as in the authors' code); or `step`: ×0.1 after
    every `step_every` units (UA-MT's LA scripts: 0.01, then 0.001 from step 2 501).

    Warm-up `shape` linear: (u + 1) / W. authors: the authors' `lr_scheduler.py`, the whole
    schedule evaluated at T = u + 7/per (their shadowed step index; T = u for per = 1), the
    cosine ½(1 + cos(π(T − W)/(N − W))) times T / W while T < W, which is 0.0012 / 0.17 /
    0.43 / 0.72 at epochs 0 / 25 / 50 / 75 of 100 warm-up epochs in 300 with 30 steps per epoch.
    """
    if schedule not in ("cosine", "constant", "poly", "step"):
        raise ClccError(f"unknown schedule {schedule!r}; choose cosine, constant, poly or step")

    def decay(t: float) -> float:
        done = min(1.0, t / max(1, total - warmup))
        if schedule == "constant":
            return 1.0
        if schedule == "step":
            return STEP_GAMMA ** (int(t) // step_every)
        if schedule == "poly":
            return (1 - done) ** POLY_POWER
        return 0.5 * (1 + math.cos(math.pi * done))

    def factor(s: int) -> float:
        u = s // per
        if shape == "authors":  # the whole schedule at their step, the warm-up a factor on it
            at = u + (min(AUTHORS_STEP, per - 1) / per if per > 1 else 0.0)
            shaped = decay(at - warmup)
            return shaped * min(1.0, at / warmup) if warmup else shaped
        if u < warmup:
            return (u + 1) / warmup
        return decay(u - warmup)

    return factor


def schedule_for(optim: OptimConfig, epochs: int, steps_per_epoch: int, iterations: int = 0):
    """The learning-rate multiplier of a run, in the unit its config asks for; a run counted
    in `iterations` ends its schedule there."""
    if optim.schedule_unit == "epoch":
        if optim.warmup_steps or iterations:
            raise ClccError("optim.schedule_unit=epoch counts epochs: use optim.warmup_epochs "
                            "and train.epochs (not warmup_steps or train.iterations)")
        return lr_lambda(optim.warmup_epochs, epochs, optim.schedule, per=steps_per_epoch,
                         shape=optim.warmup_shape)
    warmup = optim.warmup_steps + optim.warmup_epochs * steps_per_epoch
    return lr_lambda(warmup, iterations or epochs * steps_per_epoch, optim.schedule,
                     step_every=optim.step_every,
                     shape=optim.warmup_shape)


def make_optimizer(optim: OptimConfig, parameters) -> torch.optim.Optimizer:
    """AdamW (torch's foreach kernel: faster than fused here), or SGD with momentum."""
    if optim.name == "sgd":
        return torch.optim.SGD(parameters, lr=optim.lr, momentum=optim.momentum,
                               weight_decay=optim.weight_decay)
    return torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)


def to_device_batch(
    host: dict[str, torch.Tensor], runtime: Runtime, gen: torch.Generator | None,
    flips: str = "dihedral",
) -> dict[str, torch.Tensor]:
    """uint8 host batch → normalised float tensors on the device, augmented when `gen` is set
    (on the uint8 pixels, before the one float conversion)."""
    fmt = runtime.memory_format()
    raw = {k: v.to(runtime.device, non_blocking=True) for k, v in host.items()}
    if gen is not None:
        augment_batch(raw, gen, flips)
    batch = {"image": to_input(raw["image"], fmt), "mask": to_target(raw["mask"])}
    if "image_u" in raw:
        batch["image_u"] = to_input(raw["image_u"], fmt)
    return batch


def with_resolved_parameters(cfg: Config) -> Config:
    """`cfg` with every parameter of its method, defaults included."""
    params = resolved_parameters(cfg.method.name, cfg.method.params)
    return dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, params=params))


def _check_resumable(saved: dict[str, Any], cfg: Config, path: Path) -> None:
    """Refuse to resume with a different config (settings of speed and display aside)."""
    diffs = config_differences(saved, cfg)
    if diffs:
        raise ClccError(f"{path}: cannot resume, the config differs in {', '.join(diffs)}")


class Trainer:
    """One run, in named steps as nnU-Net's trainer: `__init__` keeps the config and claims the
    run folder; `initialize()` opens the data and builds the method, batches and optimiser
    (and restores `last.pt` on a resume); `fit()` trains, validates and evaluates."""

    def __init__(self, cfg: Config, resume: bool = False, overwrite: bool = False) -> None:
        self.cfg = with_resolved_parameters(cfg)  # saved whole: a later default change shows
        self.resume = resume
        self.dist = init_distributed()
        self.run_dir = self.cfg.run_dir()
        if self.dist.is_main:
            claim_run_dir(self.run_dir, [Path(self.cfg.data.root)], resume, overwrite)
        barrier(self.dist)
        self.initialized = False

    def initialize(self) -> None:
        """Everything a step needs, once: data, method, batches, optimiser, state, log."""
        if self.initialized:
            return
        if self.cfg.train.threads:
            torch.set_num_threads(self.cfg.train.threads)
        self.runtime = self._make_runtime()
        self._open_data()
        self.method = self._build_method()
        self.batches, self.to_device = self._make_batches()
        self.step_module = self._wrap_for_steps()
        self._make_optimisation()
        self.epoch, self.step, self.best_dice, self.best_epoch = 0, 0, -1.0, 0
        self.best_step = -1  # the step best.pt was taken at
        last = self.run_dir / "last.pt"
        if self.resume and last.exists():
            self._restore(load_checkpoint(last), last)  # mapped to CPU: RNG states stay there
        self.log = self._open_log()
        self.initialized = True

    def _make_runtime(self) -> Runtime:
        t = self.cfg.train
        device = t.device
        if self.dist.enabled and torch.cuda.is_available() and device in ("auto", "cuda"):
            device = f"cuda:{self.dist.local_rank}"
        return make_runtime(device, t.precision, t.channels_last)

    def _open_data(self) -> None:
        data = self.cfg.data
        self.data = open_configured(self.cfg)
        self.data_identity = DataIdentity(data.root, data.size, data.selection, data.resample)
        self.data_record = self.data_identity.record()  # the data as training starts

    def _build_method(self) -> Method:
        cfg, t = self.cfg, self.cfg.train
        torch.manual_seed(t.seed)
        method = build_method(
            cfg.method.name, cfg.input_size(), cfg.method.params, cfg.loss.supervised,
            widths=cfg.model.widths, dropout=cfg.model.dropout, architecture=cfg.model.name,
            labels=self.data.labels, in_channels=self.data.channels,
            spatial_dims=cfg.model.spatial_dims,
        )
        method.to(self.runtime.device, memory_format=self.runtime.memory_format())
        if method.uses_unlabelled and (
                t.unlabelled_batch == 0 or not len(self.data.unlabelled(cfg.data.selection))):
            raise ClccError(f"method {cfg.method.name!r} learns from unlabelled images, but "
                            + ("train.unlabelled_batch is 0" if t.unlabelled_batch == 0 else
                               f"selection {cfg.data.selection} leaves none")
                            + "; give it some (e.g. train.unlabelled_batch=4) or train "
                            "`supervised`")
        return method

    def _make_batches(self) -> tuple[TrainBatches | PatchBatches, Any]:
        """The epoch's batches on the host and the function that puts one on the device:
        patches of whole volumes augmented on the host, or slices and images augmented on
        the device."""
        cfg, t = self.cfg, self.cfg.train
        selection = cfg.data.selection
        unlabelled = (self.data.unlabelled(selection) if self.method.uses_unlabelled
                      else np.empty(0, np.int64))
        labelled = self.data.labelled(selection)
        unlabelled_batch = t.unlabelled_batch * self.method.unlabelled_batches
        if cfg.model.spatial_dims == 3:
            patches = PatchBatches(self.data, labelled, unlabelled, tuple(cfg.data.patch),
                                   t.labelled_batch, unlabelled_batch, t.seed, t.augment,
                                   t.drop_last, cfg.data.foreground, self.dist.rank,
                                   self.dist.world)
            return patches, lambda host, gen: to_volume_device(host, self.runtime.device)
        images = TrainBatches(
            self.data.images, self.data.masks, labelled, unlabelled, t.labelled_batch,
            unlabelled_batch, t.seed, rank=self.dist.rank, world=self.dist.world,
            pin_memory=self.runtime.device.type == "cuda", drop_last=t.drop_last,
        )
        return images, lambda host, gen: to_device_batch(host, self.runtime, gen, t.flips)

    def _wrap_for_steps(self) -> torch.nn.Module:
        """What a step calls: the method, under DistributedDataParallel with several ranks;
        its U-Net compiled when asked (static shapes; the step branches on progress)."""
        module: torch.nn.Module = self.method
        if self.dist.enabled:
            module = DistributedDataParallel(
                self.method, find_unused_parameters=self.method.has_unused_parameters
            )
        if self.cfg.train.compile:
            self.method.model.compile(mode=self.cfg.train.compile_mode, dynamic=False)
        return module

    def _make_optimisation(self) -> None:
        """The run's length in steps and epochs, the validation interval, the optimiser, its
        schedule and the gradient scaler."""
        cfg, t = self.cfg, self.cfg.train
        self.total_steps = t.iterations or t.epochs * len(self.batches)
        self.epochs = math.ceil(self.total_steps / len(self.batches))
        self.eval_steps = t.eval_every * (1 if t.iterations else len(self.batches))
        self.optimizer = make_optimizer(cfg.optim, self.method.trainable_parameters())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, schedule_for(cfg.optim, t.epochs, len(self.batches), t.iterations))
        self.scaler = torch.amp.GradScaler(
            self.runtime.device.type, enabled=self.runtime.needs_scaler
        )

    def _open_log(self) -> MetricsLog | None:
        """The config beside the run and its metrics log (the first rank's alone)."""
        if not self.dist.is_main:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
        return MetricsLog(self.run_dir / "metrics.jsonl", self.cfg.train.tensorboard, self.epoch)

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        _check_resumable(state["config"], self.cfg, path)
        if not self.data_identity.matches(state):
            raise ClccError(f"{path}: cannot resume, the prepared data {self.cfg.data.root} "
                            "changed since this run started (its split lists, or a source "
                            "file's bytes); pass --overwrite to train it anew")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_dice, self.best_epoch = state["best_dice"], state["best_epoch"]
        self.best_step = state.get("best_step", -1)  # unknown in older checkpoints
        set_rng_state(state["rng"])

    def _model_state(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "model": self.method.eval_model().plain_state_dict(),
            "labels": list(self.data.labels.names),
            "channels": self.data.channels,
            **({"ct": list(self.data.ct)} if self.data.ct else {}),
            "epoch": self.epoch,
        }

    def _validation_due(self, before: int) -> bool:
        """A run counted in iterations validates right after every `eval_every`-th step, as
        SSL4MIS and UniMatch do; one counted in epochs at the end of every `eval_every`-th
        epoch. Both validate after their last step."""
        if self.step == self.total_steps:
            return True
        if self.cfg.train.iterations:
            return self.step % self.eval_steps == 0
        return self.step // self.eval_steps > before // self.eval_steps

    def _validate_and_keep_best(self, val: list[str], epoch: int) -> dict[str, Any]:
        """Validation metrics now (logged with the step they were taken at); best.pt when the
        Dice is the best so far. `epoch`: the (1-based) epoch the step belongs to."""
        scores = self._validate(val)
        if scores["dice"] > self.best_dice:
            self.best_dice, self.best_epoch, self.best_step = scores["dice"], epoch, self.step
            if self.dist.is_main:
                save_checkpoint(self.run_dir / "best.pt", {**self._model_state(), "epoch": epoch})
        return {"val_step": self.step, **{f"val/{k}": v for k, v in scores.items()}}

    def _train_epoch(self, val: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
        """Mean training logs of one epoch, and the last validation made during it."""
        cfg = self.cfg.train
        validated: dict[str, Any] = {}
        gen = epoch_generator(cfg.seed, self.epoch, AUGMENT_STREAM) if cfg.augment else None
        self.method.train()
        sums: dict[str, torch.Tensor] = {}
        show_bar = cfg.progress and self.dist.is_main and sys.stderr.isatty()  # a log file
        bar = tqdm(  # gets the one line per epoch below, not carriage-return bars
            total=len(self.batches), desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=not show_bar, leave=False, dynamic_ncols=True,
        )
        steps = 0
        for i, host in enumerate(self.batches.epoch(self.epoch)):
            if self.step == self.total_steps:  # a run counted in steps ends inside an epoch
                break
            steps += 1
            if cfg.compile and cfg.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs are free
            batch = self.to_device(host, gen)
            with self.runtime.autocast():
                loss, logs = self.step_module(batch, self.step / self.total_steps)
            if not torch.isfinite(loss.detach()).item():
                terms = ", ".join(f"{k}={v.item():.4g}" for k, v in logs.items())
                raise ClccError(f"step {self.step + 1}: the loss is {loss.item()} ({terms}); "
                                f"training stopped (last.pt holds epoch {self.epoch}); lower "
                                "optim.lr or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            self.method.after_step(self.step)
            for key, value in {"loss": loss.detach(), **logs}.items():
                sums[key] = sums.get(key, 0) + value.float()
            if cfg.iterations and self._validation_due(self.step - 1):
                validated = self._validate_and_keep_best(val, self.epoch + 1)
            bar.update()
            if show_bar and (i % 10 == 0 or i + 1 == len(self.batches)):
                bar.set_postfix({k: f"{v.item() / (i + 1):.3f}" for k, v in sums.items()})
        bar.close()
        keys = sorted(sums)
        totals = all_reduce_sum(torch.stack([sums[k] for k in keys]), self.dist)
        steps *= self.dist.world
        means = {f"train/{k}": v / steps for k, v in zip(keys, totals.tolist(), strict=True)}
        return means, validated

    def _validate(self, val: list[str]) -> dict[str, float]:
        """Mean validation metrics; with several ranks each scores a shard, then all-reduce."""
        names = val[self.dist.rank :: self.dist.world]
        if self.cfg.train.recalibrate_bn:  # identical on every rank: all see all images
            recalibrate_batchnorm(self.method.eval_model(), pool_inputs(self.data, self.runtime))
        rows, _ = evaluate_prepared(self.method.eval_model(), self.data, names, self.runtime,
                                    False)
        keys = [k for k in rows[0] if k != "case"] if rows else []
        local = torch.tensor([[r[k] for k in keys] + [1.0] for r in rows], dtype=torch.float64)
        totals = all_reduce_sum(local.sum(0).to(self.runtime.device), self.dist).cpu()
        return {k: float(totals[i] / totals[-1]) for i, k in enumerate(keys)}

    def fit(self) -> dict[str, Any]:
        """Train to the configured length, then evaluate the best model on the test set."""
        self.initialize()
        val = self.data.subset("val")
        while self.epoch < self.epochs:
            self._run_epoch(val)
        if self.log is not None:
            self.log.close()
        in_sync = parameters_in_sync(self.method, self.dist)
        return self.final_evaluation(in_sync) if self.dist.is_main else {}

    def _run_epoch(self, val: list[str]) -> None:
        """One epoch: its steps (and the validations due during them), then its log line and
        `last.pt`."""
        cfg = self.cfg.train
        started = time.perf_counter()
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        before = self.step
        means, validated = self._train_epoch(val)
        record.update(means)
        self.epoch += 1
        if not cfg.iterations and self._validation_due(before):
            validated = self._validate_and_keep_best(val, self.epoch)
        record["step"], record["lr"] = self.step, self.scheduler.get_last_lr()[0]
        record.update(validated)
        record["time_s"] = round(time.perf_counter() - started, 3)
        if self.log is not None:
            self.log.write(record)
            if self.epoch % cfg.checkpoint_every == 0 or self.epoch == self.epochs:
                save_checkpoint(self.run_dir / "last.pt", self._full_state())
            tqdm.write(_epoch_line(record))

    def _full_state(self) -> dict[str, Any]:
        return {
            **self._model_state(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            **self.data_record,
            "step": self.step,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "rng": rng_state(),
        }

    def final_evaluation(self, ranks_in_sync: bool = True) -> dict[str, Any]:
        """Validation and test metrics (with HD95) of the best checkpoint, and test metrics of
        the last weights (`test_last`: what UA-MT and other code that picks no checkpoint
        reports), written to the run."""
        _, model, runtime = load_trained_model(self.run_dir / "best.pt", str(self.runtime.device))
        results: dict[str, Any] = {
            "run": str(self.run_dir), "method": self.cfg.method.name,
            "selection": self.cfg.data.selection, "seed": self.cfg.train.seed,
            "best_epoch": self.best_epoch, "epochs": self.epochs, "steps": self.step,
            "world_size": self.dist.world, "ranks_in_sync": ranks_in_sync,
            **self.data_record,
            "environment": environment(self.runtime.device), "precision": self.runtime.precision,
        }
        if self.runtime.device.type == "cuda":  # how many runs fit side by side on one GPU
            results["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        for split in ("val", "test"):
            rows, summary = evaluate_prepared(model, self.data, self.data.subset(split), runtime)
            write_per_image_csv(self.run_dir / f"{split}_per_image.csv", rows)
            results[split] = summary
        results["last_is_best"] = self.best_step == self.step
        if results["last_is_best"]:
            results["test_last"] = results["test"]
        else:
            _, last, _ = load_trained_model(self.run_dir / "last.pt", str(self.runtime.device))
            rows, results["test_last"] = evaluate_prepared(last, self.data,
                                                           self.data.subset("test"), runtime)
            write_per_image_csv(self.run_dir / "test_last_per_image.csv", rows)
        write_json(self.run_dir / "results.json", results)
        return results


def _epoch_line(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k}={v:.4f}" for k, v in record.items() if k.startswith(("train/", "val/"))]
    return "  ".join(parts) + f"  ({record['time_s']:.1f}s)"


def train(cfg: Config, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the run `cfg` names; its folder is locked meanwhile (by the first rank under
    torchrun), so a second process training the same run is refused at once."""
    first_rank = int(os.environ.get("RANK", "0")) == 0
    with exclusive(cfg.run_dir()) if first_rank else contextlib.nullcontext():
        trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
        results = trainer.fit()
        close_distributed(trainer.dist)
        return results

