"""Prediction on new images of any size and format: PNG masks at the original size, optionally
overlays and probability maps; and on NIfTI volumes: label volumes with the input's affine and
header (optionally a probability volume per class), for ITK-SNAP or 3D Slicer. The network
sees each image (each slice of a volume) resized to the training resolution; its
probabilities are resized back (bilinear) before the hard decision (p > 0.5, or the argmax).
The same path scores a labelled folder at its own resolution (`evaluate_cases`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from clcc.config import Config, config_from_dict
from clcc.data.decode import load_case, read_case, resize_image, with_channels
from clcc.data.images import IMAGE_SUFFIXES, read_image
from clcc.data.nnunet import channel_groups
from clcc.data.sources import Case
from clcc.data.volume_data import at_spacing, intensities, to_shape
from clcc.data.volumes import (
    NIFTI_SUFFIXES,
    is_nifti,
    read_volume,
    to_grey,
    volume_bytes,
    volume_stem,
)
from clcc.engine.checkpoint import load_checkpoint
from clcc.engine.evaluate import evaluate, predict_probabilities, volume_probabilities
from clcc.engine.runtime import Runtime, make_runtime
from clcc.errors import ClccError
from clcc.files import OUTPUT_MARKER, atomic_path, claim, mark, staged_into
from clcc.labels import LabelSpace
from clcc.metrics import class_metrics, summarise
from clcc.models.networks import network
from clcc.models.unet import UNet, saved_architecture

CLASS_COLOURS = np.array([[0, 255, 0], [255, 60, 60], [60, 120, 255], [255, 220, 0],
                          [255, 0, 255], [0, 230, 230], [255, 140, 0], [160, 90, 255]],
                         np.float32)
"""Overlay colour of class 1, 2, … (repeating after 8): class 1 is the binary green."""


def load_trained_model(
    checkpoint: Path, device: str = "auto", precision: str = "fp32"
) -> tuple[Config, UNet, Runtime]:
    """The training config, the evaluation U-Net (eval mode) and a runtime (fp32 unless asked)."""
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or not (
            isinstance(state.get("model"), dict)):
        raise ClccError(f"{checkpoint}: not a clcc checkpoint (no training config and model "
                        "weights in it); use a best.pt or last.pt that `clcc train` wrote")
    cfg = config_from_dict(state["config"])
    runtime = make_runtime(device, precision)
    try:
        labels = LabelSpace.from_names(state.get("labels"))
    except (ValueError, TypeError) as err:
        raise ClccError(f"{checkpoint}: unreadable class names ({err})") from err
    architecture = saved_architecture(cfg.model.name, state["model"])
    if architecture != cfg.model.name:
        print(f"{checkpoint}: made with clcc's former `{cfg.model.name}` network; loaded as "
              f"`{architecture}`")
        cfg.model.name = architecture
    model = network(UNet, architecture, in_channels=int(state.get("channels", 3)),
                    widths=cfg.model.widths, dropout=cfg.model.dropout, labels=labels,
                    spatial_dims=cfg.model.spatial_dims)
    try:
        model.load_state_dict(state["model"])
        model.ct = tuple(state["ct"]) if state.get("ct") else None
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")
        raise ClccError(f"{checkpoint}: its weights do not fit the network its config describes "
                        f"({cfg.model.name}, widths {cfg.model.widths}): {first}") from err
    return cfg, model.to(runtime.device).eval(), runtime


class Predictor:
    """Resizes an image to the training size, asks a backend for probabilities, resizes back.

    The backend maps uint8 images (N,S,S,3) to probabilities (N,heads,S,S): the PyTorch model,
    or an exported ONNX model run by onnxruntime (`Predictor.from_onnx`); `labels` says what
    they mean."""

    def __init__(self, backend: Callable[[np.ndarray], torch.Tensor], size: int,
                 labels: LabelSpace, channels: int = 3, resample: str = "bilinear",
                 volume_backend: Callable[[np.ndarray], torch.Tensor] | None = None,
                 ct: tuple[float, float, float, float] | None = None,
                 spacing: Sequence[float] | None = None) -> None:
        self.backend, self.size, self.labels = backend, size, labels
        self.channels, self.resample = channels, resample
        self.volume_backend = volume_backend  # a 3-D network: whole volume → (heads, D, H, W)
        self.ct = ct  # a 3-D network trained on CT: its training set's intensity statistics
        self.spacing = spacing  # a 3-D network trained on volumes resampled to this spacing

    @classmethod
    def from_model(cls, model: nn.Module, size: int, runtime: Runtime,
                   resample: str = "bilinear", window: tuple[int, ...] | None = None,
                   overlap: tuple[float, ...] | None = None,
                   spacing: Sequence[float] | None = None) -> Predictor:
        """`resample`: how the model's training images were resized (`data.resample`);
        `window`: a 3-D network's training patch, whole volumes predicted by sliding window;
        `spacing`: the one its training volumes were resampled to (`data.spacing`)."""
        volume_backend = None
        if model.spatial_dims == 3:
            def volume_backend(voxels: np.ndarray) -> torch.Tensor:
                return volume_probabilities(model, voxels, window, overlap, runtime)
        return cls(lambda images: predict_probabilities(model, images, runtime), size,
                   model.labels, model.in_channels, resample, volume_backend, model.ct, spacing)

    def volume(self, paths: tuple[Path, ...]) -> np.ndarray:
        """Probabilities (D, heads, H, W) of a NIfTI volume (one file per input channel): its
        grey slices one by one for a 2-D network, the whole volume, normalised as in training,
        by sliding window for a 3-D one (at its training spacing, then back on the input's
        grid)."""
        if self.volume_backend is not None:
            volumes = [read_volume(p) for p in paths]
            image = intensities(volumes, paths, ct=self.ct)
            grid = image.shape[1:]
            if self.spacing:
                image = at_spacing(image, volumes[0].spacing, self.spacing, paths[0])
            return to_shape(self.volume_backend(image), grid).numpy().transpose(1, 0, 2, 3)
        return np.stack([self.probabilities(plane[..., None])
                         for plane in _read_input(paths[0])])

    @classmethod
    def from_onnx(cls, path: Path) -> Predictor:
        from clcc.engine.export import OnnxModel

        onnx = OnnxModel(path)
        volume_backend = onnx.volume_probabilities if onnx.patch else None
        return cls(onnx.probabilities, onnx.size, onnx.labels, onnx.channels, onnx.resample,
                   volume_backend, onnx.ct, onnx.spacing)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Probabilities (heads, H, W) float32 for one uint8 image (H, W, C) at its own size:
        RGB or grey, given to the model as it takes it (`with_channels`)."""
        height, width = image.shape[:2]
        prob = self.backend(resize_image(with_channels(image, self.channels), self.size,
                                         self.resample)[None])
        full = F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=False)
        return full[0].numpy()

    def label_map(self, prob: np.ndarray) -> np.ndarray:
        """(H, W) uint8 class values from `probabilities`' output."""
        return self.labels.hard(torch.from_numpy(prob)[None])[0, 0].numpy().astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def overlay(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with each class tinted in its colour (`CLASS_COLOURS`: class 1 green) and its
    outline drawn; `label_map` (H, W) of class values (a bool mask is class 1)."""
    out = image.astype(np.float32)
    label_map = np.asarray(label_map).astype(np.int64)
    for value in range(1, int(label_map.max(initial=0)) + 1):
        mask = label_map == value
        colour = CLASS_COLOURS[(value - 1) % len(CLASS_COLOURS)]
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        inner = -F.max_pool2d(-m, 3, stride=1, padding=1)[0, 0].numpy() > 0.5
        out[mask & ~inner] = colour
    return out.astype(np.uint8)


def _output_name(path: Path) -> str:
    """`<stem>.png` for an image, `<stem>.nii.gz` (`.nii`) for a volume."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return f"{path.name[: -len(suffix)]}{suffix}"
    return f"{path.stem}.png"


def _output_names(files: list[Path], input_dir: Path) -> dict[Path, str]:
    """The output file name of each input, refusing two inputs that would share one
    (`a.png` and `a.jpg`): the second would overwrite the first."""
    names: dict[str, Path] = {}
    for path in files:
        name = _output_name(path)
        if name.lower() in names:
            raise ClccError(f"{input_dir}: {names[name.lower()].name} and {path.name} would both "
                            f"be written as {name}; rename one of them")
        names[name.lower()] = path
    return {path: _output_name(path) for path in files}


def _read_input(path: Path) -> np.ndarray:
    """An input as uint8: an image (H, W, 3), or a volume's grey slices (D, H, W)."""
    if is_nifti(path):
        return to_grey(read_volume(path).voxels, path)
    return read_image(path)


def _check_readable(files: list[Path]) -> None:
    """Decode every input before the first mask is written: a bad file ends the call with
    nothing written, rather than with a partial set that looks complete."""
    errors = []
    for path in files:
        try:
            _read_input(path)
        except ClccError as err:
            errors.append(str(err))
    if errors:
        more = f"\n... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ClccError(f"{len(errors)} unreadable input(s), nothing written:\n"
                        + "\n".join(errors[:10]) + more)


def _write_bytes(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _predict_volume(predictor: Predictor, paths: tuple[Path, ...], out: Path, name: str,
                    probabilities: bool) -> None:
    """`name` in `out`: the label volume of NIfTI `paths` (its input channels), in the first
    one's layout, affine and header; with `probabilities`, one float32 volume per class."""
    path = paths[0]
    prob = predictor.volume(paths)
    labels = predictor.labels.hard(torch.from_numpy(prob))[:, 0].numpy().astype(np.uint8)
    compressed = name.lower().endswith(".gz")
    _write_bytes(volume_bytes(labels, path, compressed), out / name)
    if probabilities:
        stem = volume_stem(Path(name))
        suffix = name[len(stem):]
        for channel, tag in zip(prob.transpose(1, 0, 2, 3), predictor.labels.channel_suffixes,
                                strict=True):
            _write_bytes(volume_bytes(np.ascontiguousarray(channel, np.float32), path,
                                      compressed),
                         out / "probabilities" / f"{stem}{tag}{suffix}")


def predict_folder(
    predictor: Predictor,
    input_dir: Path,
    output_dir: Path,
    overlays: bool = False,
    probabilities: bool = False,
    model_file: Path | None = None,
) -> tuple[list[Path], list[Path]]:
    """Write <stem>.png for every image in `input_dir` (binary: 0/255; several classes: the
    label map by value, 0 … C − 1) and <stem>.nii.gz for every NIfTI volume (class values);
    returns the output paths and the files skipped because their suffix is neither an image's
    nor a volume's. `output_dir` is new, empty, or an earlier `clcc predict` output, apart
    from the input folder and `model_file`; the outputs appear together once all are
    computed. Overlays are drawn for 2-D images only."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise ClccError(f"{input_dir}: input folder not found")
    claim(output_dir, "predict", inputs=[input_dir, model_file])
    entries = sorted(p for p in input_dir.iterdir() if p.is_file())
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES or is_nifti(p)]
    skipped = [p for p in entries if p not in files]
    if not files:
        raise ClccError(f"{input_dir}: no images found (looked for "
                        f"{', '.join(IMAGE_SUFFIXES + NIFTI_SUFFIXES)})")
    names = _output_names(files, input_dir)
    channels = {path: (path,) for path in files}
    if predictor.channels > 1 and predictor.volume_backend is not None:
        channels, names = _channel_inputs(files, predictor.channels, input_dir)
    _check_readable(files)
    with staged_into(output_dir, last=OUTPUT_MARKER) as tmp:
        for path in channels:
            if is_nifti(path):
                _predict_volume(predictor, channels[path], tmp, names[path], probabilities)
                continue
            image = read_image(path)
            prob = predictor.probabilities(image)
            label_map = predictor.label_map(prob)
            _save_png(label_map * predictor.labels.png_scale, tmp / names[path])
            if overlays:
                _save_png(overlay(image, label_map), tmp / "overlays" / names[path])
            if probabilities:
                for channel, suffix in zip(prob, predictor.labels.channel_suffixes, strict=True):
                    _save_png(np.round(channel * 255).astype(np.uint8),
                              tmp / "probabilities" / f"{Path(names[path]).stem}{suffix}.png")
        mark(tmp, "predict", input=str(input_dir.resolve()))
    return [output_dir / names[path] for path in channels], skipped


def _channel_inputs(files: list[Path], channels: int, input_dir: Path
                    ) -> tuple[dict[Path, tuple[Path, ...]], dict[Path, str]]:
    """For a model of several input channels: each case's files (`CASE_0000.nii.gz`, …, as
    nnU-Net names them), keyed by its first, and its output name `CASE.nii.gz`."""
    volumes = [p for p in files if is_nifti(p)]
    if len(volumes) != len(files):
        other = next(p for p in files if not is_nifti(p))
        raise ClccError(f"{other}: the model takes {channels} input channels of NIfTI volumes")
    groups = channel_groups({volume_stem(p): p for p in volumes}, channels, input_dir,
                            ".nii.gz")
    inputs = {paths[0]: paths for paths in groups.values()}
    suffix = {p: p.name[len(volume_stem(p)):] for p in inputs}  # .nii.gz or .nii, as given
    return inputs, {first: f"{case}{suffix[first]}" for case, (first, *_) in groups.items()}


def evaluate_cases(
    model: nn.Module, cases: list[Case], size: int, runtime: Runtime,
    resample: str = "bilinear", native: bool = False
) -> tuple[list[dict], dict[str, dict[str, float]]]:
    """Metrics on labelled cases read from files (a data set the model never saw prepared):
    at the training resolution `size`, as the trainer scores, or with `native` at each image's
    own resolution, the prediction resized back as `clcc predict` does."""
    maps = None if model.labels.binary else model.labels.as_dict()  # how the masks are read
    if not native:
        decoded = [load_case(case, size, maps, model.in_channels, resample) for case in cases]
        images = np.concatenate([d.images for d in decoded])
        masks = np.concatenate([d.masks for d in decoded])
        return evaluate(model, images, masks, [c.name for c in cases], runtime)
    predictor = Predictor.from_model(model, size, runtime, resample)
    rows = []
    for case in cases:
        image, truth = read_case(case, maps)
        predicted = predictor.label_map(predictor.probabilities(image))
        rows.append({"case": case.name, **class_metrics(predicted, truth, model.labels)})
    return rows, summarise(rows)
