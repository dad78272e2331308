import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from clcc.config import dump_config, load_config
from clcc.engine.checkpoint import load_checkpoint
from clcc.engine.logging import read_log
from clcc.engine.trainer import lr_lambda, schedule_for, train
from clcc.errors import ClccError

from helpers import locked_elsewhere


def test_fit_writes_checkpoints_logs_and_test_metrics(tiny_config):
    cfg = tiny_config("train.epochs=3")
    results = train(cfg)
    run = cfg.run_dir()
    for name in ("best.pt", "last.pt", "metrics.jsonl", "results.json", "config.yaml",
                 "test_per_image.csv", "val_per_image.csv"):
        assert (run / name).exists(), name
    log = read_log(run / "metrics.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3] and all("val/dice" in r for r in log)
    assert log[0]["lr"] > log[1]["lr"] > log[2]["lr"] == pytest.approx(0, abs=1e-12)
    assert 0 <= results["test"]["dice"]["mean"] <= 1 and "hd95" in results["test"]
    env = json.loads((run / "results.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["hardware"] and env["threads"] == torch.get_num_threads()
    assert results["precision"] == "fp32"  # what `auto` resolved to is what made the figures
    rows = (run / "test_per_image.csv").read_text().splitlines()
    assert rows[0] == "case,dice,iou,mae,precision,recall,hd95" and len(rows) == 1 + 8
    state = load_checkpoint(run / "last.pt")  # weights_only=True
    assert state["epoch"] == 3 and state["step"] == 3 * 4 and "optimizer" in state


def test_cosine_schedule_advances_every_step():
    f = lr_lambda(warmup=0, total=100, schedule="cosine")
    values = [f(s) for s in range(101)]
    assert values[0] == 1.0 and values[50] == pytest.approx(0.5) and values[100] == 0.0
    assert all(a > b for a, b in zip(values[:100], values[1:], strict=True))


def test_the_authors_schedule_warms_up_then_steps_once_per_epoch():
    from pathlib import Path


    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" /
                      "kvasir-authors-schedule.yaml")
    assert (cfg.optim.warmup_epochs, cfg.optim.schedule_unit, cfg.train.epochs) == (
        100, "epoch", 300)
    assert cfg.optim.warmup_shape == "authors"
    f = schedule_for(cfg.optim, epochs=300, steps_per_epoch=30)
    # hand-computed: ½(1 + cos(π(T − 100)/200))·T/100 at T = epoch + 7/30
    warm = [0.5 * (1 + math.cos(math.pi * (e + 7 / 30 - 100) / 200)) * (e + 7 / 30) / 100
            for e in (0, 25, 50, 75)]
    assert [round(w, 4) for w in warm] == [0.0012, 0.1749, 0.4294, 0.7242]
    assert [f(e * 30) for e in (0, 25, 50, 75)] == pytest.approx(warm)
    assert f(0) == f(29)  # once per epoch: all steps of epoch 0 alike
    assert f(100 * 30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 30 / 200)))
    assert f(200 * 30) == pytest.approx(0.5 * (1 + math.cos(math.pi * (100 + 7 / 30) / 200)))


def test_the_linear_warm_up_is_unchanged():
    f = lr_lambda(100, 300, "cosine", per=30)
    assert [f(s) for s in (0, 29, 30)] == [0.01, 0.01, 0.02]
    assert f(99 * 30) == 1.0 and f(100 * 30 + 29) == 1.0 and f(200 * 30) == pytest.approx(0.5)
    assert f(200 * 30) == f(200 * 30 + 29)  # constant within an epoch

    g = schedule_for(load_config(None, ["optim.warmup_epochs=2"]).optim, 10, 5)
    assert [g(s) for s in (0, 9, 10)] == [pytest.approx(0.1), 1.0, 1.0]  # per step by default
    assert g(11) < 1.0


def test_existing_run_needs_resume_or_overwrite(tiny_config):
    cfg = tiny_config("train.epochs=1")
    train(cfg)
    with pytest.raises(ClccError, match="a run exists; pass --resume"):
        train(cfg)
    with pytest.raises(ClccError, match="cannot resume, the config differs in optim.lr"):
        train(tiny_config("train.epochs=1", "optim.lr=0.5"), resume=True)
    train(cfg, overwrite=True)


def _launch(config_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "clcc", "train", "--config", str(config_path), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["clcc", "mean-teacher", "unimatch", "bcp"])
def test_resume_after_kill_9_matches_uninterrupted_run(tiny_config, tmp_path, method):
    """Everything resumes exactly: student, EMA teacher, projection head, optimiser, RNG (for
    BCP across the switch from pre-training to self-training at epoch 10)."""
    params = "{n: 2}" if method == "clcc" else "{}"
    overrides = ("train.epochs=40", "train.eval_every=3", f"method.name={method}",
                 f"method.params={params}", "train.threads=1")
    interrupted = tiny_config(*overrides, "train.name=interrupted")
    straight = tiny_config(*overrides, "train.name=straight")
    for cfg in (interrupted, straight):
        (tmp_path / f"{cfg.train.name}.yaml").write_text(dump_config(cfg))
    proc = _launch(tmp_path / "interrupted.yaml")
    log = interrupted.run_dir() / "metrics.jsonl"
    while len(read_log(log)) < 6 and proc.poll() is None:  # epoch 6 logged: 5 is saved, as
        time.sleep(0.05)  # an epoch's checkpoint follows its log line (however busy the CPU)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.1)  # somewhere inside an epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(interrupted.run_dir() / "last.pt")["epoch"]
    assert 5 <= killed_at < 40
    resumed = _launch(tmp_path / "interrupted.yaml", "--resume")
    reference = _launch(tmp_path / "straight.yaml")
    for p in (resumed, reference):
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    a = load_checkpoint(interrupted.run_dir() / "last.pt")
    b = load_checkpoint(straight.run_dir() / "last.pt")
    for key, value in a["method"].items():
        assert torch.equal(value, b["method"][key]), key
    ra = json.loads((interrupted.run_dir() / "results.json").read_text())
    rb = json.loads((straight.run_dir() / "results.json").read_text())
    assert ra["test"] == rb["test"] and ra["best_epoch"] == rb["best_epoch"]
    assert [r["epoch"] for r in read_log(log)] == list(range(1, 41))


def test_validation_with_recalibrated_batchnorm(tiny_config):
    from clcc.data.prepare import PreparedData
    from clcc.engine.evaluate import pool_inputs, recalibrate_batchnorm
    from clcc.engine.predict import load_trained_model

    cfg = tiny_config("train.recalibrate_bn=true", "train.epochs=1")
    train(cfg)
    _, model, runtime = load_trained_model(cfg.run_dir() / "best.pt", "cpu")
    saved = model.encoder[0][1].running_mean.clone()
    data = PreparedData.open(cfg.data.root, cfg.data.size)
    recalibrate_batchnorm(model, pool_inputs(data, runtime))
    assert torch.allclose(model.encoder[0][1].running_mean, saved, atol=1e-6)


@pytest.mark.parametrize("option", ["train.channels_last=true", "train.compile=true"])
def test_speed_options_train_the_same_model(tiny_config, option):
    """channels-last and torch.compile change how the step runs, not what it computes."""
    from clcc.data.prepare import PreparedData
    from clcc.engine.evaluate import predict_probabilities
    from clcc.engine.predict import load_trained_model

    reference = tiny_config("train.epochs=1", "train.name=reference")
    fast = tiny_config("train.epochs=1", "train.name=fast", option)
    train(reference)
    train(fast)
    want = load_checkpoint(reference.run_dir() / "last.pt")["method"]
    got = load_checkpoint(fast.run_dir() / "last.pt")["method"]
    assert want.keys() == got.keys()
    for key, value in want.items():
        if re.fullmatch(r"model\.encoder\.\d+\.[0-5]\.(bias|running_mean)", key):
            continue  # the authors' biases right before BatchNorm: BatchNorm cancels them, so
            # their gradient is rounding noise, which AdamW turns into steps of size lr; the
            # running means follow them. The function is the same: checked below
        assert torch.allclose(got[key].float(), value.float(), atol=1e-4), key
    _, a, runtime = load_trained_model(reference.run_dir() / "last.pt", "cpu")
    _, b, _ = load_trained_model(fast.run_dir() / "last.pt", "cpu")
    images = PreparedData.open(reference.data.root, reference.data.size).images[:4]
    assert torch.allclose(predict_probabilities(a, images, runtime),
                          predict_probabilities(b, images, runtime), atol=1e-3)


def test_runs_saved_before_a_new_option_still_resume(tiny_config):
    """A key missing from an older run's saved config counts as its default."""
    cfg = tiny_config("train.epochs=1")
    train(cfg)
    path = cfg.run_dir() / "last.pt"
    state = load_checkpoint(path)
    del state["config"]["train"]["recalibrate_bn"]
    torch.save(state, path)
    train(cfg, resume=True)  # accepted: the run is complete, nothing left to do
    state["config"]["train"]["recalibrate_bn"] = True  # a real difference is still refused
    torch.save(state, path)
    with pytest.raises(ClccError, match="differs in train.recalibrate_bn"):
        train(cfg, resume=True)



def test_last_checkpoint_every_n_epochs_and_at_the_end(tiny_config, monkeypatch):
    """checkpoint_every=2 over 5 epochs writes last.pt after epochs 2, 4 and 5 (the end)."""
    import clcc.engine.trainer as trainer_module

    saved = []
    real_save = trainer_module.save_checkpoint

    def spy(path, state):
        if path.name == "last.pt":
            saved.append(state["epoch"])
        real_save(path, state)

    monkeypatch.setattr(trainer_module, "save_checkpoint", spy)
    train(tiny_config("train.epochs=5", "train.checkpoint_every=2"))
    assert saved == [2, 4, 5]


def test_a_log_file_gets_one_line_per_epoch_and_no_bars(tiny_config, tmp_path):
    """Piped to a file, training with progress on writes plain epoch lines, no \\r bars."""
    config = tmp_path / "c.yaml"
    config.write_text(dump_config(tiny_config("train.epochs=3", "train.progress=true")))
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "clcc", "train", "--config", str(config)],
                              stdout=out, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert done.returncode == 0 and "\r" not in text
    assert [line.split()[1] for line in text.splitlines() if line.startswith("epoch ")] == [
        "1", "2", "3"]


def test_a_run_another_process_is_training_is_refused_untouched(tiny_config):
    cfg = tiny_config("train.epochs=1")
    with locked_elsewhere(cfg.run_dir()):
        with pytest.raises(ClccError, match="another process .* is training this run"):
            train(cfg)
        with pytest.raises(ClccError, match="another process"):
            train(cfg, overwrite=True)
    assert not cfg.run_dir().exists()
    train(cfg)  # free again
    assert (cfg.run_dir() / "results.json").exists()


def test_a_run_made_under_another_method_default_is_not_resumed(tiny_config):
    cfg = tiny_config("train.epochs=1", "method.name=mean-teacher")
    train(cfg)
    saved = yaml.safe_load((cfg.run_dir() / "config.yaml").read_text())
    assert saved["method"]["params"]["ema_decay"] == 0.99  # every parameter, defaults too
    path = cfg.run_dir() / "last.pt"
    state = load_checkpoint(path)
    state["config"]["method"]["params"]["ema_decay"] = 0.9  # as if the default was 0.9 then
    torch.save(state, path)
    with pytest.raises(ClccError, match="differs in method.params.ema_decay"):
        train(cfg, resume=True)


def test_poly_schedule_by_hand():
    """SSL4MIS's lr·(1 − s/S)^0.9, S = 30 000: 1 at the start, 0.5^0.9 half way, 0 at the end."""
    f = lr_lambda(warmup=0, total=30000, schedule="poly")
    assert f(0) == 1 and f(15000) == pytest.approx(0.5 ** 0.9) and f(30000) == 0
    assert schedule_for(load_config(None, ["optim.schedule=poly"]).optim, 10, 5,
                        iterations=100)(50) == pytest.approx(0.5 ** 0.9)


def test_sgd_with_momentum_when_asked():
    from clcc.engine.trainer import make_optimizer

    optim = load_config(None, ["optim.name=sgd", "optim.lr=0.01", "optim.weight_decay=1e-4"]
                        ).optim
    sgd = make_optimizer(optim, [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4


def test_a_run_counted_in_iterations_validates_at_exactly_every_nth_step(tiny_config):
    """As SSL4MIS and UniMatch: after step 3 and 6 of a run whose epochs are 4 steps long
    (8 labelled images, batches of 2), not at the epoch ends; best.pt names its epoch."""
    from clcc.engine.checkpoint import load_checkpoint
    from clcc.engine.trainer import train

    cfg = tiny_config("train.iterations=6", "train.eval_every=3")
    train(cfg)
    rows = [json.loads(line) for line in (cfg.run_dir() / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 6]
    assert [r.get("val_step") for r in rows] == [3, 6]
    best = load_checkpoint(cfg.run_dir() / "best.pt")["epoch"]
    assert best in (1, 2)


def test_uamt_step_schedule_by_hand():
    """UA-MT's LA scripts: lr 0.01 for steps 1 … 2 500, then ×0.1 every 2 500 (their update
    after iteration 2 500 reaches step 2 501 on)."""
    f = lr_lambda(warmup=0, total=6000, schedule="step", step_every=2500)
    assert [f(s) for s in (0, 2499, 2500, 4999, 5000, 5999)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("dice,last_is_best", [([0.9, 0.1, 0.2], False), ([0.1, 0.2, 0.9], True)])
def test_the_last_weights_are_tested_beside_the_best(tiny_config, monkeypatch, dice,
                                                     last_is_best):
    """`test_last`: the test metrics of last.pt (what code that picks no checkpoint reports),
    computed apart when the best validation came earlier, the best's own when it was last."""
    from clcc.engine import trainer as trainer_module
    from clcc.engine.evaluate import evaluate_prepared

    scores = iter(dice)
    monkeypatch.setattr(trainer_module.Trainer, "_validate",
                        lambda self, val: {"dice": next(scores), "iou": 0.0})
    cfg = tiny_config("train.epochs=3")
    results = train(cfg)
    run = cfg.run_dir()
    assert results["last_is_best"] is last_is_best
    assert json.loads((run / "results.json").read_text())["last_is_best"] is last_is_best
    assert load_checkpoint(run / "best.pt")["epoch"] == (3 if last_is_best else 1)
    assert (run / "test_last_per_image.csv").exists() is not last_is_best
    from clcc.engine.predict import load_trained_model

    _, last, runtime = load_trained_model(run / "last.pt", "cpu")
    data = trainer_module.open_configured(cfg)
    _, expected = evaluate_prepared(last, data, data.subset("test"), runtime)
    assert results["test_last"]["dice"] == pytest.approx(expected["dice"])
    if last_is_best:
        assert results["test_last"] == results["test"]
