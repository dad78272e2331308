import numpy as np
import pytest
import torch
from PIL import Image

from clcc.cli import main
from clcc.data.loaders import to_input
from clcc.engine.export import OnnxModel, ProbabilityModel
from clcc.models.unet import UNet

pytest.importorskip("onnxruntime")
TOLERANCE = 1e-4  # max |probability difference| between ONNX Runtime and PyTorch on CPU


def test_probability_model_matches_the_trainer_path():
    model = UNet(widths=(4, 8, 16)).eval()
    images = torch.randint(0, 256, (2, 8, 12, 3), dtype=torch.uint8)
    expected = torch.sigmoid(model(to_input(images)).logits)
    rgb = images.permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(ProbabilityModel(model)(rgb), expected, atol=1e-6)


def test_onnx_export_matches_pytorch_at_other_sizes(checkpoint, tmp_path):
    from clcc.engine.evaluate import predict_probabilities
    from clcc.engine.predict import load_trained_model

    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(out)]) == 0
    onnx_model = OnnxModel(out)
    cfg, model, runtime = load_trained_model(checkpoint, "cpu")
    assert onnx_model.size == cfg.data.size
    rng = np.random.default_rng(0)
    for shape in [(1, 32, 32, 3), (3, 48, 64, 3)]:  # batch and size differ from the export
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        got = onnx_model.probabilities(images)
        want = predict_probabilities(model, images, runtime)
        assert got.shape == want.shape and (got - want).abs().max() < TOLERANCE


def test_predict_with_onnx(checkpoint, tmp_path):
    main(["export", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "m.onnx")])
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(tmp_path / "in" / "a.png")
    assert main(["predict", "--onnx", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out")]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (30, 50)


def test_a_channels_last_model_exports_and_stays_channels_last(tmp_path):
    """Models trained with train.channels_last=true export as well (on a copy)."""
    from clcc.engine.export import export_onnx

    model = UNet(widths=(4, 8, 16)).eval().to(memory_format=torch.channels_last)
    onnx_model = OnnxModel(export_onnx(model, 16, tmp_path / "m.onnx"), threads=1)
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    rgb = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    want = ProbabilityModel(model)(rgb)  # (N, 1, H, W): one binary channel
    assert (onnx_model.probabilities(images) - want).abs().max() < TOLERANCE
    kernel = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] == 3)
    assert not kernel.is_contiguous() and kernel.is_contiguous(memory_format=torch.channels_last)
