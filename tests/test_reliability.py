"""Nothing silently wrong and no traceback: the bad inputs and faults of the review (issue 20),
each through the function or the CLI a user reaches, with the line they get. docs/reliability.md
is the index of these tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clcc.cli import main
from clcc.config import load_config
from clcc.data.images import read_image, read_mask
from clcc.data.prepare import PreparedData, prepare
from clcc.errors import ClccError

from conftest import TINY
from helpers import write_pair


def _raw(root, n=10):
    for i in range(n):
        write_pair(root / "images" / f"c{i}.png", root / "masks" / f"c{i}.png", seed=i)


# --- 2. no wrong result with exit 0 -----------------------------------------------------------

def test_a_palette_mask_is_read_by_colour_not_by_index(tmp_path):
    truth = np.zeros((16, 16), np.uint8)
    truth[4:12, 4:12] = 255
    quantised = Image.fromarray(truth).convert("RGB").quantize(2, method=Image.MEDIANCUT)
    palette = quantised.getpalette()[:6]
    index_of_white = 0 if palette[:3] == [255, 255, 255] else 1
    flipped = Image.fromarray(np.where(truth > 0, 0, 1).astype(np.uint8), "P")
    flipped.putpalette([255, 255, 255, 0, 0, 0])  # index 0 is white: the foreground colour
    flipped.save(tmp_path / "white-first.png")
    assert np.array_equal(read_mask(tmp_path / "white-first.png"), truth > 0)
    quantised.save(tmp_path / "quantised.png")
    assert np.array_equal(read_mask(tmp_path / "quantised.png"), truth > 0), index_of_white
    voc = Image.fromarray((truth > 0).astype(np.uint8), "P")
    voc.putpalette([0, 0, 0, 128, 0, 0])  # PASCAL VOC: dark red on black
    voc.save(tmp_path / "voc.png")
    assert np.array_equal(read_mask(tmp_path / "voc.png"), truth > 0)
    full = Image.fromarray(np.zeros((8, 8), np.uint8), "P")
    full.putpalette([255, 255, 255])  # one colour, white: all foreground
    full.save(tmp_path / "full.png")
    assert read_mask(tmp_path / "full.png").all()


def test_a_float_tiff_holding_0_to_255_is_read_by_its_range(tmp_path):
    values = np.tile(np.linspace(0, 255, 16, dtype=np.float32), (4, 1))
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    assert np.array_equal(read_image(tmp_path / "f.tif")[..., 0], np.round(values).astype(np.uint8))
    Image.fromarray(values / 255, "F").save(tmp_path / "unit.tif")
    assert read_image(tmp_path / "unit.tif").max() == 255


def test_resume_with_another_method_is_refused(tiny_config):
    from clcc.engine.trainer import train

    cfg = tiny_config("train.epochs=1", "train.name=r")
    train(cfg)
    other = tiny_config("train.epochs=1", "train.name=r", "method.name=mean-teacher")
    with pytest.raises(ClccError, match=r"cannot resume, the config differs in method.name"):
        train(other, resume=True)


def test_a_grid_notices_data_re_prepared_under_the_same_path(tmp_path, capsys):
    from clcc.experiment import run_grid

    _raw(tmp_path / "raw", n=20)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=4, selections=(0,), size=32)
    sets = [*TINY, f"data.root={tmp_path / 'p'}", "train.epochs=1"]
    run_grid(None, sets, ["supervised"], [0], tmp_path / "grid", report=False, poll_s=0.2)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=6, selections=(0,), size=32)
    with pytest.raises(ClccError, match=r"differs in the prepared data \(re-prepared under"):
        run_grid(None, sets, ["supervised"], [0], tmp_path / "grid", report=False, poll_s=0.2)


def test_a_resume_notices_data_re_prepared_under_the_same_path(tmp_path):
    from clcc.engine.trainer import train

    _raw(tmp_path / "raw", n=20)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=4, selections=(0,), size=32)
    cfg = load_config(None, [*TINY, f"data.root={tmp_path / 'p'}", "train.epochs=1",
                             f"train.output={tmp_path / 'runs'}"])
    train(cfg)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=6, selections=(0,), size=32)
    longer = load_config(None, [*TINY, f"data.root={tmp_path / 'p'}", "train.epochs=1",
                                f"train.output={tmp_path / 'runs'}"])
    with pytest.raises(ClccError, match=r"cannot resume, the prepared data .* changed"):
        train(longer, resume=True)


def test_a_copy_of_the_same_bytes_is_the_same_data_for_a_resume_and_a_grid(tmp_path, capsys):
    """Source files given new modification times (a `cp` without `-p`, a fresh checkout) are
    the same data: a resume goes on and a grid counts its run as done. A changed byte is not."""
    import os

    from clcc.engine.trainer import train
    from clcc.experiment import run_grid

    _raw(tmp_path / "raw", n=20)
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=4, selections=(0,), size=32)
    sets = [*TINY, f"data.root={tmp_path / 'p'}", "train.epochs=1"]
    run_grid(None, sets, ["supervised"], [0], tmp_path / "grid", report=False, poll_s=0.2)
    cfg = load_config(None, [*sets, f"train.output={tmp_path / 'runs'}"])
    train(cfg)
    for image in (tmp_path / "raw" / "images").iterdir():
        st = image.stat()
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    run_grid(None, sets, ["supervised"], [0], tmp_path / "grid", report=False, poll_s=0.2)
    assert "1 already done" in capsys.readouterr().out
    assert train(cfg, resume=True)["steps"] > 0  # one epoch done already: nothing to refuse
    first = sorted((tmp_path / "raw" / "images").iterdir())[0]
    first.write_bytes(first.read_bytes()[:-1] + bytes([first.read_bytes()[-1] ^ 1]))
    with pytest.raises(ClccError, match=r"cannot resume, the prepared data .* changed since"):
        train(cfg, resume=True)
    with pytest.raises(ClccError, match=r"differs in the prepared data \(re-prepared under"):
        run_grid(None, sets, ["supervised"], [0], tmp_path / "grid", report=False, poll_s=0.2)


def test_case_names_with_edge_spaces_are_refused(tmp_path):
    _raw(tmp_path / "raw")
    write_pair(tmp_path / "raw" / "images" / " c9 .png", tmp_path / "raw" / "masks" / " c9 .png")
    with pytest.raises(ClccError, match=r" c9 .png: a case name may not begin or end with white"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)


@pytest.mark.parametrize("value", ["2.7", "nan", "inf", "-1", "0", "ten"])
def test_labelled_must_be_a_whole_count_or_a_fraction(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main(["data", "prepare", "folder", "--source", str(tmp_path), "--output",
              str(tmp_path / "p"), "--labelled", value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "give a whole count (120) or a fraction between 0 and 1" in err
    assert "labelled_subset" not in err and "invalid" not in err


def test_a_split_list_with_a_repeated_case_or_a_bom_is_refused(tmp_path):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    path = tmp_path / "p" / "splits" / "labelled-0.txt"
    first = path.read_text().split()[0]
    path.write_text(path.read_text() + f"{first}\n{first}\n")
    with pytest.raises(ClccError, match=rf"labelled-0.txt: case '{first}' is listed twice"):
        PreparedData.open(tmp_path / "p", 16)
    path.write_bytes(b"\xef\xbb\xbf" + f"{first}\n".encode())
    with pytest.raises(ClccError, match=r"labelled-0.txt: starts with a byte-order mark"):
        PreparedData.open(tmp_path / "p", 16)


@pytest.mark.parametrize("split,empty", [((0.8, 0.2, 0.0), "test"), ((0.8, 0.0, 0.2), "val")])
def test_an_empty_split_is_refused_at_prepare_and_at_open(tmp_path, split, empty):
    _raw(tmp_path / "raw")
    with pytest.raises(ClccError, match=rf"leave the {empty} split empty"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", fractions=split, labelled=2, size=16)
    assert not (tmp_path / "p").exists()
    prepare("folder", tmp_path / "raw", tmp_path / "q", labelled=2, size=16)
    (tmp_path / "q" / "splits" / f"{empty}.txt").write_text("")
    with pytest.raises(ClccError, match=rf"{empty}.txt: the {empty} split is empty"):
        PreparedData.open(tmp_path / "q", 16)


# --- 4. no traceback: one line, exit 2 -----------------------------------------------------

@pytest.mark.parametrize("override,message", [
    ("data.size=100", r"data.size 100 must be a multiple of 16"),
    ("data.size=-32", r"data.size must be at least 1"),
    ("data.size=4096", r"and at most 2048"),
    ("optim.lr=.nan", r"optim.lr must be a positive number, got nan"),
    ("optim.weight_decay=-0.1", r"optim.weight_decay must be 0 or more"),
    ("model.widths=5", r"model.widths must be a list of int, got 5"),
    ("method.params=3", r"method.params must be a mapping"),
    ("model.dropout=[0.5]", r"model.dropout must give one probability .* per level \(5\)"),
])
def test_numbers_and_types_are_checked_when_the_config_is_read(override, message):
    with pytest.raises(ClccError, match=message):
        load_config(None, [override])


def test_a_float_given_in_exponent_form_is_a_float():
    assert load_config(None, ["optim.lr=1e-3"]).optim.lr == 0.001


def test_config_naming_a_folder_and_device_without_cuda(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "is a folder; --config takes a YAML file" in capsys.readouterr().err
    if not torch.cuda.is_available():
        from clcc.engine.runtime import pick_device

        with pytest.raises(ClccError, match=r"device 'cuda': this torch build .* has no CUDA"):
            pick_device("cuda")


def test_synth_with_a_negative_size_is_one_line(tmp_path, capsys):
    assert main(["data", "synth", "--output", str(tmp_path / "s"), "--size", "-4"]) == 2
    assert "need --count >= 1, --size >= 8" in capsys.readouterr().err


@pytest.mark.parametrize("state,message", [
    (torch.zeros(3), r"not a clcc checkpoint \(no training config and model weights"),
    ({"model": {}}, r"not a clcc checkpoint"),
])
def test_a_checkpoint_of_an_unexpected_structure_is_one_line(tmp_path, capsys, state, message):
    torch.save(state, tmp_path / "odd.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "odd.pt"), "--output",
                 str(tmp_path / "m.onnx")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_checkpoint_of_another_width_is_one_line(checkpoint, tmp_path, capsys):
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["model"]["widths"] = [8, 16, 32]
    torch.save(state, tmp_path / "wide.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "wide.pt"), "--output",
                 str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "its weights do not fit the network its config describes" in err
    assert len(err.splitlines()) == 1


def test_an_output_under_a_file_is_one_line(checkpoint, tmp_path, capsys):
    write_pair(tmp_path / "in" / "a.png", None, size=(32, 32))
    (tmp_path / "file").write_text("x")
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "file" / "masks"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("clcc: error: ") and len(err.splitlines()) == 1


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    write_pair(tmp_path / "big.png", None, size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ClccError, match=r"big.png: image too large to decode safely"):
        read_image(tmp_path / "big.png")


def test_a_corrupt_table_is_one_line(tmp_path, capsys):
    (tmp_path / "table.json").write_text("{not json")
    assert main(["report", "--experiment", str(tmp_path)]) == 2
    assert "table.json: unreadable" in capsys.readouterr().err


def test_an_unprepared_selection_names_the_option(synth_prepared):
    with pytest.raises(ClccError, match=r"selection 7 was not prepared \(prepared: 0, 1\); "
                       r"prepare again with --selections 0,1,7"):
        PreparedData.open(synth_prepared, 32).labelled(7)


def test_a_relative_data_root_in_a_checkpoint_suggests_data(checkpoint, tmp_path, capsys):
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["data"]["root"] = "data/prepared/elsewhere"
    torch.save(state, tmp_path / "moved.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "moved.pt"), "--device", "cpu"]) == 2
    assert "relative to the folder it was trained from); pass --data" in capsys.readouterr().err


# --- 5. processes and leftovers ------------------------------------------------------------

def test_a_failed_grid_run_ends_the_others(tiny_config, monkeypatch):
    from clcc.experiment import _Run, _Scheduler

    cfg = tiny_config()
    scheduler = _Scheduler([], 2, None, 2)
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                for _ in range(2)]
    scheduler.running = [_Run("supervised", cfg, p, open("/dev/null", "w"), time.perf_counter(),
                              0, 0) for p in sleepers]

    def fail(*_):
        raise ClccError("run X failed")

    monkeypatch.setattr(scheduler, "_run", fail)
    with pytest.raises(ClccError, match="run X failed"):
        scheduler.run(0.1, float("inf"))
    assert [p.poll() is not None for p in sleepers] == [True, True]


def test_a_failed_train_leaves_no_lock_file(tmp_path):
    from clcc.engine.trainer import train

    cfg = load_config(None, [*TINY, f"data.root={tmp_path / 'none'}",
                             f"train.output={tmp_path / 'runs'}"])
    with pytest.raises(ClccError):
        train(cfg)
    assert not list((tmp_path / "runs").glob(".*.lock"))


def test_decoding_workers_die_with_their_parent():
    """The initializer asks the kernel to kill the worker when its parent dies."""
    code = ("import ctypes, signal; from clcc.data.prepare import die_with_parent; "
            "die_with_parent(); v = ctypes.c_int(); "
            "ctypes.CDLL(None).prctl(2, ctypes.byref(v)); print(v.value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == 9  # SIGKILL


# --- 6. a grid is checked whole before its first run ---------------------------------------

@pytest.mark.parametrize("methods,selections,message", [
    (["supervised", "clcc:n=3"], [0], r"method 'clcc': bad parameters .*must split into 3x3"),
    (["supervised", "supervised"], [0], r"name supervised twice"),
    (["supervised"], [0, 5], r"selection 5 was not prepared"),
    (["supervised", "data.root=nowhere"], [0], r"nowhere: not a prepared data set"),
])
def test_a_grid_is_checked_whole_before_its_first_run(synth_prepared, tmp_path, methods,
                                                      selections, message):
    from clcc.experiment import run_grid

    sets = [*TINY, f"data.root={synth_prepared}"]
    sets += [m for m in methods if m.startswith("data.")]  # an override, not a method
    methods = [m for m in methods if not m.startswith("data.")]
    with pytest.raises(ClccError, match=message):
        run_grid(None, sets, methods, selections, tmp_path / "grid", report=False)
    assert not (tmp_path / "grid").exists()


# --- issue 30, item 4: no traceback and no NaN with exit 0 ------------------------------------

@pytest.mark.parametrize("method", ["mean-teacher", "fixmatch"])
def test_a_semi_supervised_method_without_unlabelled_images_is_refused(tiny_config, method):
    cfg = tiny_config(f"method.name={method}", "train.unlabelled_batch=0")
    from clcc.engine.trainer import Trainer

    with pytest.raises(ClccError, match="learns from unlabelled images, but "
                                        "train.unlabelled_batch is 0"):
        Trainer(cfg).initialize()


def test_a_loss_that_becomes_nan_stops_the_run_naming_the_step(tiny_config, monkeypatch):
    from clcc.engine.trainer import Trainer
    from clcc.methods.supervised import Supervised

    step = Supervised.training_step
    calls = []

    def failing(self, batch, progress):
        loss, logs = step(self, batch, progress)
        calls.append(1)
        return (loss * float("nan"), logs) if len(calls) == 3 else (loss, logs)

    monkeypatch.setattr(Supervised, "training_step", failing)
    with pytest.raises(ClccError, match=r"step 3: the loss is nan \(sup=.*training stopped"):
        Trainer(tiny_config()).fit()


def test_an_empty_selection_list_and_no_methods_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["experiment", "--methods", "supervised", "--selections=,", "--output",
              str(tmp_path / "grid")])
    assert info.value.code == 2 and "give at least one whole number" in capsys.readouterr().err
    assert main(["experiment", "--methods", "", "--output", str(tmp_path / "grid")]) == 2
    assert "--methods names no method" in capsys.readouterr().err


# --- issue 30, item 1: a checkpoint is checked against the data it is given -------------------

def test_a_binary_rgb_model_on_a_grey_four_class_set_is_one_line(checkpoint, tmp_path, capsys):
    from helpers import write_ssl4mis_acdc

    write_ssl4mis_acdc(tmp_path / "acdc")
    prepare("acdc", tmp_path / "acdc", tmp_path / "grey", labelled=1, size=32)
    args = ["evaluate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "out")]
    assert main([*args, "--data", str(tmp_path / "grey")]) == 2
    err = capsys.readouterr().err
    assert "takes RGB (3 channels) images but" in err and "grey (1 channel)" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_binary_model_on_a_four_class_set_is_refused_not_scored(checkpoint, tmp_path, capsys):
    from clcc.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "raw", count=12, size=32, classes=4)
    prepare("folder", tmp_path / "raw", tmp_path / "heart", labelled=4, size=32,
            classes=("rv", "myo", "lv"))
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "heart"),
                 "--output", str(tmp_path / "out")]) == 2
    assert "segments foreground but" in capsys.readouterr().err


# --- issue 30, item 3: memory estimated before it is spent ------------------------------------

@pytest.mark.parametrize("size", [-5, 30000])
def test_a_cache_size_out_of_range_is_one_line_before_any_decoding(tmp_path, capsys, size):
    _raw(tmp_path / "raw")
    assert main(["data", "prepare", "folder", "--source", str(tmp_path / "raw"), "--output",
                 str(tmp_path / "p"), "--size", str(size)]) == 2
    assert f"--size {size}: give the cache side in pixels, 1 … 2048" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_cache_that_cannot_fit_in_memory_is_refused_with_the_figures():
    from clcc.data.prepare import check_cache_memory

    check_cache_memory(1000, 320, 3, available=2**30)  # 0.38 GiB: fits
    with pytest.raises(ClccError, match=r"--size 2048: the cache of 1000 images would need "
                                        r"15\.6 GiB of memory, 8\.0 GiB is available"):
        check_cache_memory(1000, 2048, 3, available=8 * 2**30)


# --- issue 30, item 6: interrupts and messages --------------------------------------------------

def test_after_ctrl_c_train_names_the_command_that_resumes():
    from clcc.cli import resume_hint

    assert resume_hint(["train", "--config", "my run.yaml"]) == (
        "rerun `clcc train --config 'my run.yaml' --resume` to continue")
    assert resume_hint(["train", "--resume"]) == "rerun `clcc train --resume` to continue"
    assert resume_hint(["data", "prepare", "acdc"]) == "rerun the same command to resume"


def test_a_full_disk_is_said_so_naming_the_place(monkeypatch, capsys):
    import errno

    import clcc.cli as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/runs/last.pt")

    monkeypatch.setattr(cli, "cmd_train", full)
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err.strip() == "clcc: error: /data/runs/last.pt: the disk is full"


def test_a_staged_write_names_the_users_path_not_the_staging_name(tmp_path, monkeypatch):
    import errno
    import os

    import clcc.files as files

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(src))

    monkeypatch.setattr(files.os, "replace", read_only)
    with pytest.raises(OSError) as info, files.atomic_path(tmp_path / "table.json") as tmp:
        tmp.write_text("{}")
    assert info.value.filename == str(tmp_path / "table.json")
    with pytest.raises(OSError) as info, files.staged_into(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.csv").write_text("x")
    assert info.value.filename == str(tmp_path / "out" / "sub" / "a.csv")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_checkpoint_write_clears_a_killed_writes_leftover_and_says_a_full_disk(
        tmp_path, monkeypatch):
    import errno

    from clcc.engine import checkpoint

    last = tmp_path / "last.pt"
    checkpoint.save_checkpoint(last, {"epoch": 1})
    leftover = tmp_path / ".last.pt.0123456789ab.tmp"
    leftover.write_bytes(b"")  # what kill -9 during torch.save leaves
    checkpoint.save_checkpoint(last, {"epoch": 2})
    assert not leftover.exists() and checkpoint.load_checkpoint(last)["epoch"] == 2

    def full(state, path):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed ?: 12288000 "
                           "requested and 2051968 written")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError) as info:
        checkpoint.save_checkpoint(last, {"epoch": 3})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(last)
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(last)["epoch"] == 2  # the previous one, intact


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_prepare_ends_it_and_its_workers(tmp_path):
    """Ctrl-C once the decoding workers run (seen in /proc, so the moment does not depend on
    the machine's speed): the command ends, exit 130, no worker left, no output folder."""
    import os
    import signal

    rng = np.random.default_rng(0)
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "masks").mkdir()
    for i in range(120):
        Image.fromarray(rng.integers(0, 255, (600, 600, 3), np.uint8)).save(
            tmp_path / "raw" / "images" / f"c{i}.png")
        Image.fromarray((rng.random((600, 600)) > 0.5).astype(np.uint8) * 255).save(
            tmp_path / "raw" / "masks" / f"c{i}.png")
    def as_a_shell_starts_it() -> None:
        """SIGINT neither blocked nor ignored, as a shell starts a command: a child of pytest
        inherits both from pytest's process, which other tests run before this one share."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen([sys.executable, "-m", "clcc", "data", "prepare", "folder",
                             "--source", str(tmp_path / "raw"), "--output", str(tmp_path / "p"),
                             "--size", "512"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=as_a_shell_starts_it)
    deadline = time.time() + 120
    while len(_children(proc.pid)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2, "the decoding workers never started"
    signals = [line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
               if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)  # it used to hang here
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, (
        proc.returncode, err[-500:], signals)
    assert not (tmp_path / "p").exists()
    time.sleep(0.5)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()
                and "zombie" not in Path(f"/proc/{w}/status").read_text().lower()]


def test_a_worker_starts_with_ctrl_c_held_and_the_main_process_gets_it_after():
    """The race the test above once lost on a loaded machine: Ctrl-C between a worker's fork
    and its initializer killed the worker with a traceback. Started inside `ctrl_c_held`, a
    process begins with SIGINT blocked; a Ctrl-C sent to this thread meanwhile reaches it as
    the block ends, and its mask is as before."""
    import multiprocessing
    import signal
    import threading

    from clcc.data.prepare import ctrl_c_held

    def report_mask(queue) -> None:
        queue.put(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))

    # as a shell's foreground command has it, whatever pytest inherited
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    context = multiprocessing.get_context("fork")
    queue, reached = context.Queue(), False
    try:
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_held():
                child = context.Process(target=report_mask, args=(queue,))
                child.start()
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # held here
                reached = True
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        signal.signal(signal.SIGINT, handler)
    child.join(10)
    assert reached and queue.get(timeout=10) is True
    assert signal.SIGINT not in mask


def test_an_empty_labelled_list_is_one_line_at_train(synth_prepared, tmp_path, capsys):
    import shutil

    shutil.copytree(synth_prepared, tmp_path / "p", ignore=shutil.ignore_patterns("cache"))
    (tmp_path / "p" / "splits" / "labelled-0.txt").write_text("")
    sets = [a for s in [*TINY, f"data.root={tmp_path / 'p'}", f"train.output={tmp_path}"]
            for a in ("--set", s)]
    assert main(["train", *sets]) == 2
    assert "labelled-0.txt: the labelled subset is empty" in capsys.readouterr().err
