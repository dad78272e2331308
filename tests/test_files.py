"""Atomic writes: outputs appear whole or not at all, with the permissions of the umask."""

import os
import stat
from pathlib import Path

import pytest

from clcc.errors import ClccError
from clcc.files import (
    OUTPUT_MARKER,
    atomic_path,
    check_apart,
    claim,
    exclusive,
    is_locked,
    mark,
    staged_into,
    write_json,
)

from helpers import locked_elsewhere


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_are_readable_by_others_under_the_usual_umask(tmp_path, umask_022):
    write_json(tmp_path / "table.json", {"dice": 0.5})
    with staged_into(tmp_path / "cache") as tmp:
        (tmp / "a.npy").write_bytes(b"x")
    assert (tmp_path / "table.json").read_text() == '{\n  "dice": 0.5\n}\n'
    assert mode(tmp_path / "table.json") == 0o644
    assert mode(tmp_path / "cache") == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "table.json"]


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path):
    (tmp_path / "out.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "kept").write_text("old")
    with pytest.raises(RuntimeError), staged_into(tmp_path / "folder") as tmp:
        (tmp / "new").write_text("half")
        raise RuntimeError("writer crashed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.txt"]


def test_a_staged_write_replaces_only_its_own_files(tmp_path):
    """Files of the folder that this write does not make stay; files an earlier write of the
    same command listed in its marker and this one does not write again go."""
    folder = tmp_path / "folder"
    with staged_into(folder) as tmp:
        (tmp / "a.png").write_text("1")
        (tmp / "b.png").write_text("1")
        mark(tmp, "predict")
    (folder / "notes.txt").write_text("mine")
    claim(folder, "predict")
    with staged_into(folder) as tmp:
        (tmp / "a.png").write_text("2")
        mark(tmp, "predict")
    assert sorted(p.name for p in folder.iterdir()) == [OUTPUT_MARKER, "a.png", "notes.txt"]
    assert (folder / "a.png").read_text() == "2" and (folder / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("layout", ["a folder of someone else's files", "a file"])
def test_claim_refuses_what_the_command_did_not_make(tmp_path, layout):
    target = tmp_path / "out"
    if layout == "a file":
        target.write_text("thesis")
    else:
        target.mkdir()
        (target / "thesis.tex").write_text("thesis")
    with pytest.raises(ClccError, match=r"out: (a non-empty folder that `clcc predict` did not "
                       r"make|exists and was not written by `clcc predict`); it is left"):
        claim(target, "predict")
    mark(target if target.is_dir() else tmp_path, "export")  # another command's marker
    with pytest.raises(ClccError):
        claim(target, "predict")
    claim(tmp_path / "new", "predict")  # absent: fine
    (tmp_path / "empty").mkdir()
    claim(tmp_path / "empty", "predict")


@pytest.mark.parametrize("output", ["in", "in/masks", "."])
def test_an_output_never_is_holds_or_lies_inside_an_input(tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    with pytest.raises(ClccError, match=r"the output is, holds or lies inside the input in"):
        check_apart(Path(output), [Path("in")])
    check_apart(Path("out"), [Path("in"), None])


def test_leftovers_of_a_killed_write_go_with_the_next_write(tmp_path):
    (tmp_path / ".out.0123456789ab.tmp").mkdir()
    (tmp_path / ".out.0123456789ab.tmp" / "half.png").write_text("x")
    (tmp_path / ".out.abcdef012345.tmp").write_text("x")
    (tmp_path / ".other.0123456789ab.tmp").write_text("not ours")
    claim(tmp_path / "out", "predict")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.0123456789ab.tmp"]


def test_a_run_locked_elsewhere_is_refused_until_that_process_dies(tmp_path):
    run = tmp_path / "grid" / "supervised-sel0"
    with locked_elsewhere(run) as holder:
        assert is_locked(run)
        with pytest.raises(ClccError, match=rf"supervised-sel0: another process \(pid "
                           rf"{holder.pid}\) is training this run; wait for it"):
            with exclusive(run):
                pass
    assert not is_locked(run)  # killed with -9: the system let the lock go
    with exclusive(run):
        assert (tmp_path / "grid" / ".supervised-sel0.lock").read_text() == str(os.getpid())
    assert not is_locked(run)
