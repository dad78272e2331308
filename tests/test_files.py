"""Atomic writes: outputs appear whole or not at all, with the permissions of the umask."""

import os
import stat

import pytest

from clcc.errors import ClccError
from clcc.files import atomic_dir, atomic_path, exclusive, is_locked, write_json

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
    with atomic_dir(tmp_path / "cache") as tmp:
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
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "new").write_text("half")
        raise RuntimeError("writer crashed")
    assert (tmp_path / "out.txt").read_text() == "old"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["kept"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.txt"]


def test_a_folder_is_replaced_whole(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "stale").write_text("old")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "fresh").write_text("new")
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


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
