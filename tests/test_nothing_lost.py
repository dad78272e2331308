"""Every command that writes replaces only what it made itself (design.md section 9): the six
data-loss cases found by the review, each through the CLI, with the user's files checked
untouched afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from clcc.cli import main

from conftest import TINY
from helpers import write_pair


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_predict_into_its_own_input_folder_is_refused(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.png", None, size=(32, 32))
    before = _snapshot(tmp_path / "in")
    for output in ("in", "in/masks"):
        code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                     "--output", str(tmp_path / output), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and "the output is, holds or lies inside the input" in err
    assert _snapshot(tmp_path / "in") == before


def test_predict_refuses_two_inputs_that_would_share_one_mask(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.png", None, size=(32, 32))
    write_pair(tmp_path / "in" / "a.jpg", None, size=(32, 32), seed=1)
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 2
    assert "a.jpg and a.png would both be written as a.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_predict_writes_nothing_when_one_input_is_unreadable(checkpoint, tmp_path, capsys):
    for name in ("a", "c"):
        write_pair(tmp_path / "in" / f"{name}.png", None, size=(32, 32))
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG truncated")
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "1 unreadable input(s), nothing written" in err and "b.png" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no half set, no temporary


def test_predict_into_a_folder_of_other_files_is_refused_and_its_own_is_rewritten(
        checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.png", None, size=(32, 32))
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "a.png").write_bytes(b"the user's own mask")
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
            "--device", "cpu", "--output"]
    assert main([*args, str(tmp_path / "theirs")]) == 2
    assert "did not make; it is left untouched" in capsys.readouterr().err
    assert (tmp_path / "theirs" / "a.png").read_bytes() == b"the user's own mask"
    assert main([*args, str(tmp_path / "out")]) == 0
    assert main([*args, str(tmp_path / "out")]) == 0  # its own output: replaced
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).shape == (32, 32)


def test_export_onto_its_own_checkpoint_is_refused(checkpoint, capsys):
    before = checkpoint.read_bytes()
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(checkpoint)]) == 2
    assert "the output is, holds or lies inside the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


def test_export_over_a_file_it_did_not_write_is_refused(checkpoint, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"someone else's model")
    assert main(["export", "--checkpoint", str(checkpoint), "--output",
                 str(tmp_path / "model.onnx")]) == 2
    assert "exists and was not written by `clcc export`" in capsys.readouterr().err
    assert (tmp_path / "model.onnx").read_bytes() == b"someone else's model"


def test_synth_into_a_folder_of_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "thesis.tex").write_text("years of work")
    assert main(["data", "synth", "--output", str(tmp_path / "d"), "--count", "2"]) == 2
    assert "did not make; it is left untouched" in capsys.readouterr().err
    assert _snapshot(tmp_path / "d") == {Path("thesis.tex"): b"years of work"}
    assert main(["data", "synth", "--output", str(tmp_path / "s"), "--count", "3"]) == 0
    assert main(["data", "synth", "--output", str(tmp_path / "s"), "--count", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "s" / "images").iterdir()) == [
        "synth_0000.png", "synth_0001.png"]  # its own third case of the first call: gone


def test_train_overwrite_never_deletes_a_folder_that_is_not_a_run(synth_prepared, tmp_path,
                                                                   capsys):
    study = tmp_path / "runs" / "mystudy"
    for i in range(3):
        write_pair(study / "images" / f"{i}.png", study / "masks" / f"{i}.png")
    (study / "notes.txt").write_text("notes")
    before = _snapshot(study)
    sets = [*TINY, f"data.root={synth_prepared}", f"train.output={tmp_path / 'runs'}",
            "train.name=mystudy"]
    assert main(["train", "--overwrite", *[a for s in sets for a in ("--set", s)]]) == 2
    assert "did not make; it is left untouched" in capsys.readouterr().err
    assert _snapshot(study) == before


def test_train_overwrite_of_a_run_keeps_the_users_other_files(tiny_config, tmp_path):
    from clcc.engine.trainer import train

    cfg = tiny_config("train.epochs=1")
    train(cfg)
    (cfg.run_dir() / "my-notes.txt").write_text("keep")
    train(cfg, overwrite=True)
    assert (cfg.run_dir() / "my-notes.txt").read_text() == "keep"
    assert (cfg.run_dir() / "results.json").exists()



def test_evaluate_into_a_folder_of_other_files_is_refused(checkpoint, tmp_path, capsys):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "summary.json").write_text("my own summary")
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "e"),
                 "--device", "cpu"]) == 2
    assert "`clcc evaluate` did not make" in capsys.readouterr().err
    assert (tmp_path / "e" / "summary.json").read_text() == "my own summary"


def test_experiment_and_report_refuse_folders_they_did_not_make(synth_prepared, tmp_path,
                                                                capsys):
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "paper.tex").write_text("draft")
    sets = [a for s in [*TINY, f"data.root={synth_prepared}"] for a in ("--set", s)]
    assert main(["experiment", "--methods", "supervised", "--selections", "0", "--output",
                 str(tmp_path / "grid"), "--no-report", *sets]) == 2
    assert "`clcc experiment` did not make" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "grid").iterdir()) == ["paper.tex"]
    (tmp_path / "exp" / "report").mkdir(parents=True)
    (tmp_path / "exp" / "report" / "slides.pdf").write_text("slides")
    (tmp_path / "exp" / "table.json").write_text(json.dumps({"runs": [
        {"variant": "supervised", "selection": 0, "method": "supervised", "run": "x"}],
        "rows": []}))
    assert main(["report", "--experiment", str(tmp_path / "exp")]) == 2
    assert "`clcc report` did not make" in capsys.readouterr().err
    assert (tmp_path / "exp" / "report" / "slides.pdf").read_text() == "slides"


def test_every_option_has_a_help_text():
    import argparse

    from clcc.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = [f"{p.prog} {a.option_strings}" for p in parsers(build_parser())
               for a in p._actions if a.option_strings and not a.help]
    assert missing == []
