"""The method interface and its registry.

A method owns the networks it trains (the U-Net, and for example an EMA teacher or a
projection head) as an `nn.Module`, so one `state_dict` holds everything to resume. The engine
does the rest: devices, precision, optimiser, schedule, evaluation, checkpoints.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from clcc.errors import ClccError
from clcc.hints import conform, kind
from clcc.models.networks import network
from clcc.models.unet import UNet

Batch = dict[str, torch.Tensor]
Logs = dict[str, torch.Tensor]


class Method(nn.Module):
    """Base class. `batch` holds normalised float tensors on the device:
    "image" (B,C,H,W) and "mask" (B,1,H,W) labelled, "image_u" (B',C,H,W) unlabelled, or
    (B,C,D,H,W) patches of volumes for a 3-D network: a method never asks which."""

    uses_unlabelled: ClassVar[bool] = True
    model_class: ClassVar[type[UNet]] = UNet  # URPC swaps in its pyramid variant
    has_unused_parameters: ClassVar[bool] = False  # some steps leave parameters unused (DDP)
    default_dropout: ClassVar[tuple[float, ...] | None] = None  # per encoder level, when the
    # config sets none: the SSL4MIS baselines train their U-Net with dropout

    def __init__(self, model: UNet, image_size: int | tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.image_size = image_size
        self.labels = model.labels  # what the logits mean: every probability, pseudo-label
        # and class-wise loss of a method comes from here
        self.supervised_loss = model.labels.supervised_loss()  # `build_method` may choose
        # another (the CLCC authors' form)

    @property
    def unlabelled_batches(self) -> int:
        """How many unlabelled batches a step takes (the engine draws them as one `image_u`
        of that many times `train.unlabelled_batch` images): FixMatch's CutMix partners are a
        second batch, as UniMatch draws them."""
        return 1

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        """Total loss to backpropagate and named (detached) parts; progress in [0, 1]."""
        raise NotImplementedError

    def forward(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Logs]:
        """The training step, as `forward`, so DistributedDataParallel can wrap the method."""
        return self.training_step(batch, progress)

    def after_step(self, step: int) -> None:
        """Called after each optimiser step (EMA updates)."""

    def eval_model(self) -> nn.Module:
        """The network evaluated, checkpointed as `model` and used for prediction."""
        return self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher ← decay·teacher + (1 − decay)·student over parameters and floating buffers
    (BatchNorm statistics); integer buffers (batch counters) are copied."""
    weights = student.state_dict()
    for name, value in teacher.state_dict().items():
        if value.dtype.is_floating_point:
            value.lerp_(weights[name], 1.0 - decay)
        else:
            value.copy_(weights[name])


def all_images(batch: Batch) -> torch.Tensor:
    """Labelled then unlabelled images in one tensor (the labelled ones come first)."""
    if "image_u" not in batch:
        return batch["image"]
    return torch.cat([batch["image"], batch["image_u"]])


METHODS: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    def add(cls: type[Method]) -> type[Method]:
        METHODS[name] = cls
        return cls

    return add


def build_method(
    name: str, image_size: int | tuple[int, ...], params: dict[str, Any] | None = None,
    supervised_loss: str = "paper", **model_args: Any
) -> Method:
    """The registered method `name` with a fresh network of its `model_class` (built from
    `model_args`: widths, dropout, architecture, labels), for square images of `image_size`,
    trained with the supervised loss `supervised_loss` (paper or authors: `LabelSpace`)."""
    if name not in METHODS:
        raise ClccError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    params = check_parameters(name, params or {})
    if model_args.get("dropout") is None and cls.default_dropout is not None:
        levels = len(model_args.get("widths") or UNet().widths)
        padded = [*cls.default_dropout, *[cls.default_dropout[-1]] * levels]
        model_args = {**model_args, "dropout": padded[:levels]}
    try:
        model_args = {"architecture": "authors", **model_args}
        method = cls(network(cls.model_class, **model_args), image_size, **(params or {}))
        method.supervised_loss = method.labels.supervised_loss(supervised_loss)
    except (TypeError, ValueError) as err:
        raise ClccError(f"method {name!r}: bad parameters {params} ({err})") from err
    return method


def method_parameters(cls: type[Method]) -> dict[str, inspect.Parameter]:
    """A method's parameters: the keyword arguments of its constructor after (model,
    image_size), with those of the class it extends where it passes `**kwargs` on (UAMT)."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass in (Method, nn.Module, object) or "__init__" not in vars(klass):
            continue
        params = list(inspect.signature(klass.__init__).parameters.values())[3:]
        found.update({p.name: p for p in params if p.kind is p.KEYWORD_ONLY
                      or p.kind is p.POSITIONAL_OR_KEYWORD})
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return found


def describe(parameter: inspect.Parameter, hint: Any) -> str:
    default = parameter.default
    shown = f"{default:.4g}" if isinstance(default, float) else repr(default)
    return f"{parameter.name} ({kind(hint)}, default {shown})"


def _hints(cls: type[Method]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and klass not in (nn.Module, object):
            hints = {**typing.get_type_hints(klass.__init__), **hints}
    return hints


def parameter_listing(name: str) -> str:
    """The parameters of method `name`, with types, choices and defaults (for help texts)."""
    cls = METHODS[name]
    hints = _hints(cls)
    return "; ".join(describe(p, hints.get(n)) for n, p in method_parameters(cls).items()) or (
        "none")


def check_parameters(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` as the method takes them (`clcc.hints.conform`: YAML's `1e-3` a float);
    refused, before anything runs, a parameter the method does not have or a value of the
    wrong type or outside its choices, with a message that lists what the method takes."""
    if name not in METHODS:
        raise ClccError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    known, hints = method_parameters(cls), _hints(cls)
    conformed = {}
    for key, value in params.items():
        if key not in known:
            raise ClccError(f"method {name!r} has no parameter {key!r}; it takes: "
                            f"{parameter_listing(name)}")
        hint = hints.get(key)
        try:
            conformed[key] = value if hint is None else conform(hint, value)
        except ValueError:
            raise ClccError(f"method {name!r}: parameter {key}={value!r} must be "
                            f"{kind(hint)}") from None
    return conformed


def resolved_parameters(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` (checked) completed with the method's defaults: what a run saves, so that a
    later change of a default reads as a difference rather than as the same run."""
    defaults = {n: p.default for n, p in method_parameters(METHODS[name]).items()}
    return {**defaults, **check_parameters(name, params)}
