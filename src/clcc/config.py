"""Configuration: typed dataclasses, loaded from YAML and overridden with `key.sub=value`.

The CLI builds everything from a `Config` at the edge; modules receive plain typed arguments.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from clcc.errors import ClccError
from clcc.hints import conform, kind


@dataclass
class DataConfig:
    root: str = "data/prepared/synthetic"  # a folder written by `clcc data prepare`
    size: int = 96  # training resolution (square); images are cached at this size
    selection: int = 0  # which labelled subset (splits/labelled-<selection>.txt)
    resample: Literal["bilinear", "nearest"] = "bilinear"  # how images are resized to `size`;
    # nearest as SSL4MIS, UniMatch and BCP zoom ACDC slices (order 0). Masks: always nearest
    patch: list[int] | None = None  # a 3-D network's training patch (D, H, W); volumes are
    # kept whole and scored by a sliding window of this size (clcc.data.volume_data)
    window_overlap: list[float] | None = None  # per axis (D, H, W); None: 0.5. UA-MT's LA
    # strides 4/18/18 on a 80×112×112 window are [0.95, 0.839, 0.839]
    foreground: float = 0.0  # share of each labelled patch batch centred on foreground:
    # 0 as UA-MT (uniform crops), 0.33 as nnU-Net oversamples
    spacing: list[float] | None = None  # (D, H, W) mm: a 3-D network's volumes resampled to
    # it (nnU-Net's target spacing; images trilinear, labels nearest), then scored and
    # predicted on each volume's own grid. None: volumes as they are


@dataclass
class ModelConfig:
    name: Literal["authors", "ssl4mis", "ssl4mis-v1", "vnet", "unet3d-dv"] = "authors"  # the
    # CLCC authors' U-Net, SSL4MIS's, what clcc called SSL4MIS's before it matched it
    # (clcc.models.unet.ARCHITECTURES), UA-MT's 3-D V-Net (clcc.models.vnet), or SSL4MIS's
    # 3-D U-Net with deep supervision, its URPC 3-D network (clcc.models.unet3d_dv)
    spatial_dims: Literal[2, 3] = 2  # 3: a 3-D network on whole volumes (`data.patch`)
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    dropout: list[float] | None = None  # per encoder level; None = no dropout


@dataclass
class MethodConfig:
    name: str = "supervised"
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the method


@dataclass
class LossConfig:
    supervised: Literal["paper", "authors", "vnet"] = "paper"  # ½(Dice + BCE), eq. (4); or
    # the CLCC authors' code: BCE + per-image Dice, no ½; or UA-MT's: ½(CE + V-Net Dice, Σp²
    # in the denominator) (clcc.losses). Binary tasks; C classes train with CE + Dice


@dataclass
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"  # AdamW, as in the paper; SGD with momentum, as
    # SSL4MIS, UniMatch and BCP train ACDC
    lr: float = 1e-3  # AdamW defaults, as in the paper
    weight_decay: float = 0.01
    momentum: float = 0.9  # of SGD
    schedule: Literal["cosine", "constant", "poly", "step"] = "cosine"  # poly: lr·(1 − s/S)^0.9;
    # step: lr·0.1^(s // step_every), UA-MT's LA schedule
    step_every: int = 2500
    warmup_steps: int = 0  # warm-up, in optimiser steps ...
    warmup_epochs: int = 0  # ... and/or in epochs (the authors' configs: 100 of 300)
    warmup_shape: Literal["linear", "authors"] = "linear"  # or the authors' cosine × T/W
    schedule_unit: Literal["step", "epoch"] = "step"  # step: the schedule advances every step;
    # epoch: once per epoch, as the authors' code does


@dataclass
class TrainConfig:
    epochs: int = 300  # one epoch = one pass over the labelled subset
    iterations: int = 0  # > 0: the run is counted in optimiser steps instead (SSL4MIS: 30 000),
    # and eval_every counts steps too
    labelled_batch: int = 4
    unlabelled_batch: int = 4
    drop_last: bool = False  # an epoch drops its short last labelled batch, as SSL4MIS's
    # TwoStreamBatchSampler and UniMatch's loaders do (kept when it is the only batch)
    eval_every: int = 5  # validate every N epochs (and after the last)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 (fp16 on older
    # GPUs) on CUDA and on CPUs with AMX or AVX512-BF16, else fp32
    channels_last: bool = False
    compile: bool = False  # torch.compile the U-Net (minutes of compilation first)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "default"  # reduce-overhead:
    # CUDA graphs
    checkpoint_every: int = 1  # epochs between last.pt writes (a resume restarts from there)
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default
    augment: bool = True  # random flips and 90° rotations, on the device
    flips: Literal["dihedral", "authors", "ssl4mis", "reflections"] = "dihedral"  # uniform
    # over the 8 flips × turns; the authors' HFlip, VFlip, RandomRotate90 at p 0.5 each;
    # SSL4MIS's: turns and a flip with p 0.5, else with p 0.5 a rotation in [−20°, 20°); or
    # SSL4MIS's FixMatch's: turns and a flip, always (clcc.data.augment)
    recalibrate_bn: bool = False  # before each validation, BatchNorm statistics from full
    # training images only (for methods that also feed patches: see docs/results.md)
    output: str = "runs"
    name: str = ""  # run folder name; default "<method>-sel<selection>-seed<seed>"
    tensorboard: bool = False
    progress: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def input_size(self) -> int | tuple[int, ...]:
        """What a method is built for: the square image side, or a 3-D network's patch."""
        return tuple(self.data.patch) if self.model.spatial_dims == 3 else self.data.size

    def run_dir(self) -> Path:
        name = self.train.name or (
            f"{self.method.name}-sel{self.data.selection}-seed{self.train.seed}"
        )
        return Path(self.train.output) / name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ClccError(f"unknown config key {where}{unknown[0]}; choose from {', '.join(hints)}")
    kwargs = {}
    for name, value in values.items():
        if dataclasses.is_dataclass(hints[name]):
            if not isinstance(value, dict):
                raise ClccError(f"config {where}{name} must be a mapping, got {value!r}")
            kwargs[name] = _build(hints[name], value, f"{where}{name}.")
        else:
            try:
                kwargs[name] = conform(hints[name], value)
            except ValueError:
                raise ClccError(f"config {where}{name} must be {kind(hints[name])}, got "
                                f"{value!r}") from None
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str) -> None:
    if "=" not in dotted:
        raise ClccError(f"override {dotted!r} must look like key.sub=value")
    key, raw = dotted.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ClccError(f"override {dotted!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        both_maps = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both_maps else value
    return merged


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config; a top-level `base: other.yaml` (relative to this file) is read first and
    this file's keys override it, so variants state only what differs."""
    path = Path(path)
    if path.resolve() in seen:
        raise ClccError(f"{path}: config `base` chain loops back to itself")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ClccError(f"{path}: config file not found") from err
    except IsADirectoryError as err:
        raise ClccError(f"{path}: is a folder; --config takes a YAML file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ClccError(f"{path}: cannot read config ({err})") from err
    except yaml.YAMLError as err:
        raise ClccError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(tree, dict):
        raise ClccError(f"{path}: a config must be a mapping of sections")
    base = tree.pop("base", None)
    if base is None:
        return tree
    return _merge(_read_yaml(path.parent / base, (*seen, path.resolve())), tree)


MAX_SIZE = 2048  # training resolution: a cache of 1000 RGB images at 2048² is 12.6 GB

# counts and sizes that must be at least this, checked before any folder is made
MINIMUM = {"data.size": 1, "train.epochs": 1, "train.iterations": 0, "train.labelled_batch": 1,
           "train.unlabelled_batch": 0, "train.eval_every": 1, "train.checkpoint_every": 1,
           "train.threads": 0, "optim.warmup_steps": 0, "optim.warmup_epochs": 0,
           "optim.step_every": 1}


def _check_ranges(cfg: Config) -> Config:
    values = cfg.to_dict()
    for dotted, least in MINIMUM.items():
        section, key = dotted.split(".")
        if values[section][key] < least:
            raise ClccError(f"config {dotted} must be at least {least}, got {values[section][key]}")
    if not (math.isfinite(cfg.optim.lr) and cfg.optim.lr > 0):
        raise ClccError(f"config optim.lr must be a positive number, got {cfg.optim.lr}")
    if not (math.isfinite(cfg.optim.momentum) and 0 <= cfg.optim.momentum < 1):
        raise ClccError(f"config optim.momentum must be in [0, 1), got {cfg.optim.momentum}")
    if not (math.isfinite(cfg.optim.weight_decay) and cfg.optim.weight_decay >= 0):
        raise ClccError(f"config optim.weight_decay must be 0 or more, got "
                        f"{cfg.optim.weight_decay}")
    divisor = 2 ** (len(cfg.model.widths) - 1)
    if cfg.model.name in ("vnet", "unet3d-dv") and cfg.model.spatial_dims != 3:
        raise ClccError(f"config model.name {cfg.model.name} is a 3-D network: set "
                        "model.spatial_dims=3 and data.patch")
    if cfg.model.name == "unet3d-dv" and len(cfg.model.widths) != 5:
        raise ClccError(f"config model.name unet3d-dv has five levels: model.widths must give "
                        f"five, got {cfg.model.widths}")
    if cfg.model.spatial_dims == 3:
        patch = cfg.data.patch or []
        if len(patch) != 3 or any(p < 1 or p % divisor for p in patch):
            raise ClccError(f"config data.patch must give 3 sides (D, H, W), each a multiple "
                            f"of {divisor}, for a 3-D network; got {cfg.data.patch}")
        if cfg.data.window_overlap is not None and (
                len(cfg.data.window_overlap) != 3
                or not all(0 <= o < 1 for o in cfg.data.window_overlap)):
            raise ClccError(f"config data.window_overlap must give 3 overlaps in [0, 1), got "
                            f"{cfg.data.window_overlap}")
    if cfg.data.spacing is not None and (
            cfg.model.spatial_dims != 3 or len(cfg.data.spacing) != 3
            or not all(math.isfinite(s) and s > 0 for s in cfg.data.spacing)):
        raise ClccError(f"config data.spacing must give 3 positive sides in mm (D, H, W), for a "
                        f"3-D network (model.spatial_dims: 3); got {cfg.data.spacing}")
    if not 0 <= cfg.data.foreground <= 1:
        raise ClccError(f"config data.foreground must be a share in [0, 1], got "
                        f"{cfg.data.foreground}")
    if cfg.data.size % divisor or cfg.data.size > MAX_SIZE:
        raise ClccError(f"config data.size {cfg.data.size} must be a multiple of {divisor} (the "
                        f"{len(cfg.model.widths)}-level U-Net halves it {len(cfg.model.widths) - 1}"
                        f" times) and at most {MAX_SIZE}")
    if cfg.model.dropout is not None and (
            len(cfg.model.dropout) != len(cfg.model.widths)
            or not all(0 <= p < 1 for p in cfg.model.dropout)):
        raise ClccError(f"config model.dropout must give one probability in [0, 1) per level "
                        f"({len(cfg.model.widths)}), got {cfg.model.dropout}")
    if any(w < 1 for w in cfg.model.widths) or len(cfg.model.widths) < 2:
        raise ClccError(f"config model.widths must be two or more positive counts, got "
                        f"{cfg.model.widths}")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults ← YAML file (and its `base` chain) ← `key.sub=value` overrides (YAML values)."""
    tree = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides or []:
        _set_dotted(tree, item)
    return _check_ranges(_build(Config, tree, ""))


def upgraded(saved: dict[str, Any]) -> dict[str, Any]:
    """A config saved by an earlier version, in today's terms: runs made before `model.name`
    existed trained what is now `ssl4mis-v1`, whatever today's default is."""
    model = saved.get("model")
    if isinstance(model, dict) and "name" not in model:
        return {**saved, "model": {**model, "name": "ssl4mis-v1"}}
    return saved


def config_from_dict(values: dict[str, Any]) -> Config:
    """A saved config (a checkpoint's, a run's `config.yaml`), upgraded, checked."""
    return _check_ranges(_build(Config, upgraded(values), ""))


# train keys that change where a run is written, how fast it goes or what it prints, never
# what it computes: a run may resume, or count as done, with other values of these
NON_RESULT_KEYS = tuple(f"train.{k}" for k in (
    "output", "name", "progress", "tensorboard", "threads", "checkpoint_every", "compile",
    "compile_mode"))  # whole dotted keys: `name` alone would also hide method.name


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree as dotted keys, each method parameter a key of its own."""
    flat: dict[str, Any] = {}
    for section, values in tree.items():
        for key, value in (values or {}).items():
            if (section, key) == ("method", "params"):
                flat.update({f"method.params.{name}": v for name, v in (value or {}).items()})
            else:
                flat[f"{section}.{key}"] = value
    return flat


def config_differences(
    saved: dict[str, Any], cfg: Config, ignored: tuple[str, ...] = NON_RESULT_KEYS
) -> list[str]:
    """Dotted keys whose value in `saved` (a run's config) differs from `cfg`. A key newer than
    the saved run counts as its default, so runs made before an option existed still match; so
    does a method parameter the saved run lacks (older versions saved only the ones given),
    while one only the saved run has differs. Runs save every method parameter with its
    default (`clcc.methods.resolved_parameters`): compare against a `cfg` completed alike, and
    a changed default shows as a difference."""
    now, old, defaults = _flat(cfg.to_dict()), _flat(upgraded(saved)), _flat(Config().to_dict())
    gone = [k for k in old if k.startswith("method.params.") and k not in now]
    return [
        key for key in [*now, *gone]
        if key not in ignored
        and not _same(key, old.get(key, defaults.get(key, now.get(key))), now.get(key))
    ]


def _same(key: str, saved: Any, now: Any) -> bool:
    """Equal values; for `data.root`, also two spellings of one folder (relative and absolute):
    the data's fingerprint, not its path's spelling, tells a run on other data."""
    if saved == now:
        return True
    return (key == "data.root" and isinstance(saved, str) and isinstance(now, str)
            and Path(saved).resolve() == Path(now).resolve())


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
