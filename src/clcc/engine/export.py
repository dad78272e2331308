"""ONNX export for deployment where PyTorch is not installed, and its onnxruntime runner.

The graph takes float RGB in [0, 1] (N,3,H,W; H and W divisible by the U-Net's 2^(levels−1))
and returns the foreground probability (N,1,H,W) of a binary model, or the C class
probabilities (N,C,H,W) of a multi-class one: normalisation and sigmoid/softmax are inside, so
a user only scales pixels by 1/255. The class names are in the metadata (`clcc.labels`).
Batch, height and width are dynamic. The training size is
stored in the model's metadata (`clcc.size`). A 3-D model takes (N,1,D,H,W) z-scored
intensities, all three sides dynamic, and keeps its training patch (`clcc.patch`), which
`clcc predict --onnx` slides over a whole volume. Needs the `onnx` extra (onnx, onnxscript,
onnxruntime).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clcc.data.loaders import pixel_statistics
from clcc.errors import ClccError
from clcc.files import atomic_path, claim
from clcc.labels import LabelSpace
from clcc.models.unet import UNet

SIZE_KEY = "clcc.size"
RESAMPLE_KEY = "clcc.resample"  # how images were resized for training (`data.resample`)
PATCH_KEY = "clcc.patch"  # a 3-D model's training patch (D, H, W), JSON
SPACING_KEY = "clcc.spacing"  # the spacing (D, H, W) its training volumes were resampled to
CT_KEY = "clcc.ct"  # a CT volume set's intensity statistics (clcc.data.volume_data), JSON
LABELS_KEY = "clcc.labels"  # the foreground class names, JSON (absent before: binary)


class ProbabilityModel(nn.Module):
    """Pixels in [0, 1] (RGB, or grey for a one-channel model) → probabilities (the
    foreground's, or each class's): the deployable form of a trained U-Net."""

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.model = model
        mean, std = pixel_statistics(model.in_channels)
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model.labels.probabilities(self.model((rgb - self.mean) / self.std).logits)


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError as err:
        raise ClccError(f"ONNX support needs {module}: pip install 'clcc[onnx]'") from err


def is_exported(path: Path) -> bool:
    """Whether `path` is an ONNX file `clcc export` wrote (its `clcc.size` metadata)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not ours
        return False
    return any(prop.key == SIZE_KEY for prop in proto.metadata_props)


def export_onnx(model: UNet, size: int, output: Path, checkpoint: Path | None = None,
                resample: str = "bilinear", patch: list[int] | None = None,
                ct: list[float] | None = None, spacing: list[float] | None = None) -> Path:
    """Write the ONNX graph to `output`: a new file, or one `clcc export` wrote; never the
    `checkpoint` it comes from."""
    _require("onnx")
    _require("onnxscript")
    import onnx

    claim(Path(output), "export", inputs=[checkpoint], ours=is_exported)

    # a copy in the default layout: the exporter rejects channels-last weights
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    wrapper = ProbabilityModel(plain).eval()
    if model.spatial_dims == 3:  # no side of 1 at the bottleneck, nor a batch of 1: both
        # would be traced as constants
        sides, count = [max(p, 2 * model.divisor) for p in patch], 2
    else:
        sides, count = [size, size], 1
    example = torch.rand(count, model.in_channels, *sides)
    batch = torch.export.Dim("batch", min=1)
    names = ("depth", "height", "width")[-len(sides):]
    dims = {"rgb": {0: batch, **{2 + i: torch.export.Dim(n, min=1) * model.divisor
                                 for i, n in enumerate(names)}}}
    program = torch.onnx.export(
        wrapper, (example,), input_names=["rgb"], output_names=["probability"],
        dynamic_shapes=dims, dynamo=True, verbose=False,
    )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {
        SIZE_KEY: str(size), RESAMPLE_KEY: resample,
        LABELS_KEY: json.dumps(list(model.labels.names)),
        **({PATCH_KEY: json.dumps(list(patch))} if model.spatial_dims == 3 else {}),
        **({CT_KEY: json.dumps(list(ct))} if ct else {}),
        **({SPACING_KEY: json.dumps(list(spacing))} if spacing else {})})
    with atomic_path(Path(output)) as tmp:
        onnx.save(proto, tmp)
    return Path(output)


class OnnxModel:
    """An exported model in onnxruntime, with the interface of `predict_probabilities`."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        """`threads` = 0 lets onnxruntime use every core."""
        _require("onnxruntime")
        import onnxruntime as ort

        if not Path(path).exists():
            raise ClccError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
            raise ClccError(f"{path}: not a readable ONNX model ({err})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if SIZE_KEY not in meta:
            raise ClccError(f"{path}: not exported by `clcc export` (no {SIZE_KEY} metadata)")
        self.size = int(meta[SIZE_KEY])
        self.resample = meta.get(RESAMPLE_KEY, "bilinear")
        self.channels = int(self.session.get_inputs()[0].shape[1])
        self.labels = LabelSpace.from_names(json.loads(meta.get(LABELS_KEY, "null")))
        self.patch = json.loads(meta.get(PATCH_KEY, "null"))  # None: a 2-D model
        ct = json.loads(meta.get(CT_KEY, "null"))
        self.ct = tuple(ct) if ct else None
        self.spacing = json.loads(meta.get(SPACING_KEY, "null"))

    def volume_probabilities(self, voxels: np.ndarray,
                             overlap: tuple[float, ...] | None = None) -> torch.Tensor:
        """A whole volume (C, D, H, W) float32 → probabilities (heads, D, H, W), by a sliding
        window of the training patch (as `clcc.engine.evaluate.volume_probabilities`)."""
        from monai.inferers import sliding_window_inference

        def run(patch: torch.Tensor) -> torch.Tensor:
            (prob,) = self.session.run(["probability"], {"rgb": patch.numpy()})
            return torch.from_numpy(prob)

        x = torch.from_numpy(np.array(voxels, np.float32))[None]
        return sliding_window_inference(x, self.patch, 1, run,
                                        overlap=list(overlap) if overlap else 0.5)[0]

    def probabilities(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W,C) → probabilities (N,heads,H,W)."""
        rgb = np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2), np.float32) / 255
        (prob,) = self.session.run(["probability"], {"rgb": rgb})
        return torch.from_numpy(prob)
