import platform

import numpy as np
import pytest
import torch
from PIL import Image

from clcc import __version__
from clcc.cli import main

from helpers import write_pair


def test_predict_writes_masks_at_original_size(checkpoint, tmp_path):
    write_pair(tmp_path / "in" / "wide.jpg", None, size=(70, 30))
    grey = np.full((45, 20), 120, np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "in" / "grey.png")
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--overlay", "--probabilities",
                 "--device", "cpu"])
    assert code == 0
    wide = np.asarray(Image.open(tmp_path / "out" / "wide.png"))
    assert wide.shape == (30, 70) and set(np.unique(wide)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "out" / "grey.png")).shape == (45, 20)
    assert np.asarray(Image.open(tmp_path / "out" / "overlays" / "wide.png")).shape == (30, 70, 3)
    assert (tmp_path / "out" / "probabilities" / "grey.png").exists()


def test_evaluate_command(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "e"),
                 "--device", "cpu"]) == 0
    assert "dice" in capsys.readouterr().out
    assert (tmp_path / "e" / "per_image.csv").read_text().startswith("case,dice,iou")


def test_evaluate_in_bf16_is_close_to_fp32(checkpoint, tmp_path):
    """bf16 autocast changes the probabilities slightly, not the masks' metrics much."""
    import json

    dice = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(out),
                     "--device", "cpu", "--precision", precision]) == 0
        dice[precision] = json.loads((out / "summary.json").read_text())["dice"]["mean"]
    assert abs(dice["bf16"] - dice["fp32"]) < 0.02
    from clcc.engine.predict import load_trained_model

    assert load_trained_model(checkpoint, "cpu", "bf16")[2].dtype == torch.bfloat16


def test_version_names_clcc_torch_and_python(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == (
        f"clcc {__version__} (torch {torch.__version__}, Python {platform.python_version()})\n")


def test_prepare_command_prints_the_split(tmp_path, capsys):
    for i in range(10):
        write_pair(tmp_path / "raw" / "images" / f"c{i}.jpg", tmp_path / "raw" / "masks" /
                   f"c{i}.jpg", seed=i)
    assert main(["data", "prepare", "kvasir-seg", "--source", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "p"), "--labelled", "0.5", "--size", "16"]) == 0
    assert "train 6 / val 2 / test 2; labelled 3, unlabelled 3" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "src" / "images").mkdir(parents=True)
    code = main(["data", "prepare", "folder", "--source", str(tmp_path / "src"), "--output",
                 str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("clcc: error: ") and "no images found" in err
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.pt"), "--input", ".",
                 "--output", str(tmp_path / "o")]) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt: not a readable clcc checkpoint" in err and "weights_only" not in err


class _RunsCode:
    """Unpickling this calls print: what a malicious checkpoint would do with os.system."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_malicious_pickle_is_refused_in_one_line(tmp_path, capsys):
    torch.save({"model": _RunsCode()}, tmp_path / "evil.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "evil.pt")]) == 2
    captured = capsys.readouterr()
    assert "code ran" not in captured.out
    assert captured.err.count("\n") == 1
    assert "evil.pt: not a clcc checkpoint; refused, because loading it would run code" in (
        captured.err)
    assert "weights_only" not in captured.err


def test_predict_says_which_files_it_skipped(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.png", None, size=(32, 32))
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "scan.dcm").write_bytes(b"DICM")
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "wrote 1 masks" in out
    assert "skipped 2 file(s) that are not images by their suffix" in out
    assert "notes.txt" in out and "scan.dcm" in out


def test_batchnorm_recalibration_is_the_plain_average():
    from clcc.data.loaders import to_input
    from clcc.engine.evaluate import recalibrate_batchnorm
    from clcc.models.unet import UNet

    torch.manual_seed(0)
    model = UNet(widths=(4, 8, 16)).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    recalibrate_batchnorm(model, (to_input(torch.from_numpy(images[i : i + 3])) for i in (0, 3)))
    conv, bn = model.encoder[0][0], model.encoder[0][1]
    features = conv(to_input(torch.from_numpy(images)))
    batch_means = [features[:3].mean((0, 2, 3)), features[3:].mean((0, 2, 3))]
    assert torch.allclose(bn.running_mean, (batch_means[0] + batch_means[1]) / 2, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training


def test_recalibration_estimates_the_network_that_predicts_dropout_off():
    """Training's running averages carry dropout's extra variance, which evaluation never sees:
    the re-estimate is that of the same weights without dropout (and so the same every time),
    and the dropout layers train again afterwards."""
    from clcc.engine.evaluate import recalibrate_batchnorm
    from clcc.models.unet import UNet

    torch.manual_seed(0)
    dropping = UNet(widths=(4, 8, 16), dropout=[0.5, 0.5, 0.5]).train()
    plain = UNet(widths=(4, 8, 16), dropout=[0.0, 0.0, 0.0])
    plain.load_state_dict(dropping.state_dict())
    batches = [torch.randn(3, 3, 16, 16) for _ in range(2)]

    def statistics(model):
        recalibrate_batchnorm(model, iter(batches))
        return torch.cat([b.clone() for b in model.buffers() if b.is_floating_point()])

    expected = statistics(plain)
    assert torch.equal(statistics(dropping), expected)
    assert torch.equal(statistics(dropping), expected)
    assert all(m.training for m in dropping.modules())


def test_evaluate_with_recalibration(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--recalibrate-bn",
                 "--output", str(tmp_path / "e"), "--device", "cpu"]) == 0
    assert "dice" in capsys.readouterr().out


def test_train_help_lists_the_registered_methods(capsys):
    from clcc.methods import METHODS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    out = "".join(text.split())  # argparse wraps lines, even at hyphens
    assert "oneof" + ",".join(sorted(METHODS)) in out
    assert "  fixmatch: threshold (float, default 0.95)" in text  # each method's parameters
    assert "stage1 (float, default 0.3333)" in text and "reduction (one of sum|mean" in text


def test_evaluate_any_labelled_folder_at_both_resolutions(checkpoint, tmp_path, capsys):
    import json

    for i, size in enumerate([(40, 30), (64, 48), (33, 33)]):
        write_pair(tmp_path / "im" / f"p{i}.jpg", tmp_path / "gt" / f"p{i}.png", size=size, seed=i)
    for native in (False, True):
        args = ["evaluate", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "im"),
                "--masks", str(tmp_path / "gt"), "--output", str(tmp_path / f"e{native}"),
                "--device", "cpu"] + (["--native-resolution"] if native else [])
        assert main(args) == 0
        rows = (tmp_path / f"e{native}" / "per_image.csv").read_text().splitlines()
        assert rows[0].startswith("case,dice") and [r.split(",")[0] for r in rows[1:]] == [
            "p0", "p1", "p2"]
        summary = json.loads((tmp_path / f"e{native}" / "summary.json").read_text())
        assert 0 <= summary["dice"]["mean"] <= 1
    out = capsys.readouterr().out
    assert "3 images at 32×32" in out and "3 images at their own resolution" in out


def test_evaluate_folder_errors_name_the_file(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "im" / "a.png", tmp_path / "gt" / "a.png")
    write_pair(tmp_path / "im" / "b.png", None)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "im"),
                 "--masks", str(tmp_path / "gt")]) == 2
    assert "b.png: no mask in" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(checkpoint),
                 "--images", str(tmp_path / "im")]) == 2
    assert "--images and --masks go together" in capsys.readouterr().err


def test_evaluate_every_labelled_image_of_a_prepared_set(checkpoint, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--split", "all",
                 "--output", str(tmp_path / "all"), "--device", "cpu"]) == 0
    rows = (tmp_path / "all" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + 40  # the tiny synthetic set: 40 labelled cases


def test_evaluate_at_another_threshold_scores_the_probabilities_cut_there(checkpoint, tmp_path,
                                                                          capsys):
    """`--threshold P`: each image's Dice is that of probability > P, computed here by hand
    from the model's probabilities; the cut is recorded beside the figures."""
    import json

    from clcc.data.prepare import PreparedData
    from clcc.engine.evaluate import predict_probabilities
    from clcc.engine.predict import load_trained_model
    from clcc.engine.runtime import make_runtime

    cfg, model, _ = load_trained_model(checkpoint, "cpu")
    data = PreparedData.open(cfg.data.root, cfg.data.size)
    names = data.subset("test")
    idx = data.indices(names, "test")
    prob = predict_probabilities(model, data.images[idx], make_runtime("cpu", "fp32"))[:, 0]
    cut = float(prob.median())  # a cut where half the pixels change sides, not 0.5
    truth = torch.from_numpy(np.asarray(data.masks[idx]) > 0)
    dice = {}
    for p in (0.5, cut):
        pred = prob > p
        both, total = (pred & truth).sum((1, 2)), pred.sum((1, 2)) + truth.sum((1, 2))
        dice[p] = torch.where(total > 0, 2 * both / total.clamp(min=1), 1.0).tolist()
    assert dice[cut] != pytest.approx(dice[0.5], abs=1e-3)
    for p, extra in ((0.5, []), (cut, ["--threshold", str(cut)])):
        out = tmp_path / f"e{p}"
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(out),
                     "--device", "cpu", *extra]) == 0
        rows = (out / "per_image.csv").read_text().splitlines()
        header = rows[0].split(",")
        got = [float(r.split(",")[header.index("dice")]) for r in rows[1:]]
        assert [r.split(",")[0] for r in rows[1:]] == names
        assert got == pytest.approx(dice[p], abs=1e-5)
        assert json.loads((out / ".clcc-output.json").read_text())["threshold"] == p
    assert f"foreground where its probability > {cut}" in capsys.readouterr().out


def test_predict_masks_shrink_as_the_threshold_rises(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.jpg", None, size=(40, 30))
    area = {}
    for p in ("0.3", None, "0.7"):
        out = tmp_path / f"out{p}"
        assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                     "--output", str(out), "--device", "cpu",
                     *(["--threshold", p] if p else [])]) == 0
        area[p] = np.asarray(Image.open(out / "a.png")) > 0
    assert (area["0.7"] <= area[None]).all() and (area[None] <= area["0.3"]).all()
    assert area["0.7"].sum() < area["0.3"].sum()
    for bad in ("1", "0", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                  "--output", str(tmp_path / "o"), "--threshold", bad])
        assert exit_.value.code == 2
        assert f"{bad!r}: give a probability between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
