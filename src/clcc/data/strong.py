"""Strong perturbations of FixMatch-style methods, batched on the training device.

As UniMatch's medical pipeline draws them (`dataset/transform.py`, `dataset/acdc.py`), per
image: colour jitter with probability 0.8 (brightness, contrast, saturation ×U(0.5, 1.5), hue
shifted by U(−0.25, 0.25) of a turn), Gaussian blur with probability 0.5 (σ ~ U(0.1, 2)), and a
CutMix box with probability 0.5 (area U(0.02, 0.4) of the image, aspect ratio U(0.3, 1/0.3);
`clcc.geometry.cutmix_boxes`, where every box and cube is drawn).
Written in a few lines of torch rather than with a library: each is one formula, and torch's
own random generator then draws every choice, so a resumed run replays them exactly (the
trainer checkpoints that generator). The jitter's four factors are applied in a fixed order
(torchvision draws one), and hue turns in YIQ space (a linear stand-in for HSV).

Images come and go normalised, as the network takes them (`clcc.data.loaders.to_input`).
Everything takes volumes (B, C, D, H, W) as it takes images: each channel of a volume, windowed
to [0, 1] by its own range, gets the jitter's brightness and contrast, a blur along its three
axes, and (in `clcc.geometry`) a CutMix cube (an adaptation: no author defines 3-D strong views;
the cube holds the drawn share of the patch's voxels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clcc.data.loaders import pixel_statistics
from clcc.geometry import uniform

GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                           [0.211, -0.523, 0.312]])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def _per_image(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(x.device, x.dtype).view(-1, *[1] * (x.dim() - 1))


def _grey_weights(x: torch.Tensor) -> torch.Tensor:
    return GREY.to(x).view(1, 3, *[1] * (x.dim() - 2))


def colour_jitter(x: torch.Tensor, p: float = 0.8, strength: float = 0.5,
                  hue: float = 0.25) -> torch.Tensor:
    """x in [0, 1], (B,3,H,W) or grey (B,1,H,W); each image jittered with probability `p`.
    A grey image gets brightness and contrast only: saturation and hue leave grey unchanged
    (as torchvision's jitter leaves UniMatch's grey ACDC slices)."""
    if x.shape[1] == 1:
        return colour_jitter(x.expand(-1, 3, *x.shape[2:]), p, strength, hue)[:, :1]
    b = x.shape[0]
    on = _per_image((torch.rand(b) < p).float(), x)
    brightness = _per_image(uniform(b, 1 - strength, 1 + strength), x)
    contrast = _per_image(uniform(b, 1 - strength, 1 + strength), x)
    saturation = _per_image(uniform(b, 1 - strength, 1 + strength), x)
    angle = uniform(b, -hue, hue) * 2 * math.pi
    y = (x * brightness).clamp(0, 1)
    spatial = tuple(range(2, x.dim()))
    mean_grey = (y * _grey_weights(x)).sum(1, keepdim=True).mean(spatial, keepdim=True)
    y = ((y - mean_grey) * contrast + mean_grey).clamp(0, 1)
    grey = (y * _grey_weights(x)).sum(1, keepdim=True)
    y = ((y - grey) * saturation + grey).clamp(0, 1)
    y = _turn_hue(y, angle)
    return on * y + (1 - on) * x


def _turn_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) of each image by its angle."""
    cos, sin = angle.cos(), angle.sin()
    turn = torch.zeros(len(angle), 3, 3)
    turn[:, 0, 0] = 1
    turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = cos, -sin, sin, cos
    matrix = (YIQ_TO_RGB @ turn @ RGB_TO_YIQ).to(x)  # (B,3,3) RGB → RGB, made on the host
    return torch.einsum("bij,bj...->bi...", matrix, x).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0)
                  ) -> torch.Tensor:
    """Each image blurred with probability `p`, σ ~ U(sigma) pixels: one separable depthwise
    convolution for the whole batch, along each spatial axis in turn (an image left sharp gets
    the identity kernel)."""
    b, c = x.shape[:2]
    chosen = (torch.rand(b) < p).float().view(-1, 1)
    sigmas = uniform(b, *sigma).view(-1, 1)
    radius = math.ceil(3 * sigma[1])
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (taps / sigmas) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)
    identity = (taps == 0).float().expand(b, -1)
    kernels = (chosen * kernels + (1 - chosen) * identity).to(x)  # (B, K)
    kernels = kernels.repeat_interleave(c, dim=0)  # one per (image, channel)
    dims = x.dim() - 2
    conv = F.conv2d if dims == 2 else F.conv3d
    planes = F.pad(x.reshape(1, b * c, *x.shape[2:]), (radius,) * 2 * dims, mode="reflect")
    for axis in reversed(range(dims)):  # along rows, then columns (then slices)
        shape = [1] * dims
        shape[axis] = -1
        planes = conv(planes, kernels.view(b * c, 1, *shape), groups=b * c)
    return planes.reshape(x.shape).contiguous(memory_format=_memory_format(x))


def strong_view(x: torch.Tensor, p: float = 0.8, strength: float = 0.5, hue: float = 0.25,
                blur: float = 0.5) -> torch.Tensor:
    """Colour jitter and blur of a normalised batch (the CutMix box is drawn apart, since its
    labels must follow it); by default UniMatch's, `colour_jitter`'s arguments and the blur's
    probability otherwise (0: no blur, nothing drawn for it). Volumes (B, C, D, H, W) hold
    intensities, not pixels in [0, 1]: each channel of each volume is windowed to [0, 1] by its
    own range, jittered as grey and blurred, and put back on its scale (clamping z-scores to
    [0, 1] would erase most of it)."""
    def perturb(pixels: torch.Tensor) -> torch.Tensor:
        pixels = colour_jitter(pixels, p, strength, hue)
        return gaussian_blur(pixels, blur) if blur else pixels

    if x.dim() == 5:
        flat = x.reshape(-1, 1, *x.shape[2:])
        low = flat.amin(dim=(2, 3, 4), keepdim=True)
        span = (flat.amax(dim=(2, 3, 4), keepdim=True) - low).clamp_min(1e-6)
        return (perturb((flat - low) / span) * span + low).reshape(x.shape)
    mean, std = (t.to(x) for t in pixel_statistics(x.shape[1], x.dim() - 2))
    pixels = perturb((x * std + mean).clamp(0, 1))
    return ((pixels - mean) / std).contiguous(memory_format=_memory_format(x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last and x.shape[1] > 1 else torch.contiguous_format
