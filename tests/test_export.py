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
