import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clcc.data.prepare import PreparedData, prepare, select_labelled, split_cases
from clcc.errors import ClccError

from helpers import write_pair


def test_split_sizes_of_the_paper():
    kvasir = split_cases([f"k{i:04d}" for i in range(1000)], (0.6, 0.2, 0.2), seed=0)
    assert [len(kvasir[s]) for s in ("train", "val", "test")] == [600, 200, 200]
    isic = split_cases([f"ISIC_{i:07d}" for i in range(2594)], (0.6, 0.2, 0.2), seed=0)
    assert [len(isic[s]) for s in ("train", "val", "test")] == [1556, 519, 519]
    assert set(kvasir["train"]).isdisjoint(kvasir["val"]) and set(kvasir["val"]).isdisjoint(
        kvasir["test"]
    )


def test_split_depends_only_on_names_and_seed():
    names = [f"case{i}" for i in range(50)]
    a = split_cases(names, (0.6, 0.2, 0.2), seed=3)
    assert a == split_cases(list(reversed(names)), (0.6, 0.2, 0.2), seed=3)
    assert a != split_cases(names, (0.6, 0.2, 0.2), seed=4)
    # pinned from `printf "split:3:caseN" | sha256sum` ranking: same on every machine
    assert a["val"][:3] == ["case0", "case11", "case18"]


def test_selection_seed_is_separate_from_split_seed():
    train = [f"t{i}" for i in range(600)]
    s0, s1 = select_labelled(train, 120, 0), select_labelled(train, 120, 1)
    assert len(s0) == 120 and set(s0) <= set(train)
    assert s0 == select_labelled(train, 120, 0) and s0 != s1


def _raw(root, n=10, size=(24, 16)):
    for i in range(n):
        write_pair(root / "images" / f"c{i}.png", root / "masks" / f"c{i}.png", size, seed=i)


def test_prepare_writes_readable_lists_and_cache(tmp_path):
    _raw(tmp_path / "raw")
    summary = prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    assert summary == {"train": 6, "val": 2, "test": 2, "labelled": 2, "unlabelled": 4}
    lines = (tmp_path / "p" / "splits" / "labelled-0.txt").read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("c") for line in lines)
    data = PreparedData.open(tmp_path / "p", 16)
    assert data.images.shape == (10, 16, 16, 3) and data.masks.shape == (10, 16, 16)
    assert set(np.unique(data.masks)) <= {0, 1}
    assert len(data.labelled(0)) == 2 and len(data.unlabelled(0)) == 4


def test_cache_is_rebuilt_when_the_source_or_size_changes(tmp_path):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    before = PreparedData.open(tmp_path / "p", 16).images[0].copy()
    new = np.full((16, 24, 3), 7, np.uint8)
    Image.fromarray(new).save(tmp_path / "raw" / "images" / "c0.png")
    os.utime(tmp_path / "raw" / "images" / "c0.png", ns=(1, 10**18))
    after = PreparedData.open(tmp_path / "p", 16)
    assert not np.array_equal(before, after.images[0]) and (after.images[0] == 7).all()
    assert PreparedData.open(tmp_path / "p", 8).images.shape == (10, 8, 8, 3)


def test_bad_case_leaves_no_output(tmp_path):
    _raw(tmp_path / "raw")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "raw" / "masks" / "c3.png")
    with pytest.raises(ClccError, match=r"c3.png: mask is 5x5 but its image is 24x16"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    assert not (tmp_path / "p").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p")]


def test_edited_list_with_unknown_case_is_reported(tmp_path):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    (tmp_path / "p" / "splits" / "labelled-0.txt").write_text("c1\nnot_a_case\n")
    with pytest.raises(ClccError, match="labelled-0.txt: unknown case 'not_a_case'"):
        PreparedData.open(tmp_path / "p", 16).labelled(0)


def test_labelled_count_out_of_range(tmp_path):
    _raw(tmp_path / "raw")
    with pytest.raises(ClccError, match="labelled subset 50 gives 50 of 6 training cases"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=50, size=16)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_output_folder_with_other_files_is_left_untouched(tmp_path):
    _raw(tmp_path / "raw")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    with pytest.raises(ClccError, match=r"out: a non-empty folder that `clcc data prepare` did "
                       r"not make; it is left untouched"):
        prepare("folder", tmp_path / "raw", tmp_path / "out", labelled=2, size=16, overwrite=True)
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"
    assert _files(tmp_path / "out") == [Path("thesis.tex")]


@pytest.mark.parametrize("where", ["source", "parent", "inside"])
def test_output_that_is_holds_or_lies_inside_the_source_is_refused(tmp_path, where):
    source = tmp_path / "data" / "raw"
    _raw(source)
    before = _files(tmp_path)
    output = {"source": source, "parent": tmp_path / "data", "inside": source / "prepared"}[where]
    with pytest.raises(ClccError, match="the output is, holds or lies inside the input"):
        prepare("folder", source, output, labelled=2, size=16, overwrite=True)
    assert _files(tmp_path) == before


def test_prepared_set_of_another_source_needs_overwrite(tmp_path):
    _raw(tmp_path / "a")
    _raw(tmp_path / "b", n=12)
    prepare("folder", tmp_path / "a", tmp_path / "p", labelled=2, size=16)
    prepare("folder", tmp_path / "a", tmp_path / "p", labelled=3, size=16)  # same source: fine
    with pytest.raises(ClccError, match=r"already a prepared set of another source .*overwrite"):
        prepare("folder", tmp_path / "b", tmp_path / "p", labelled=2, size=16)
    assert len(PreparedData.open(tmp_path / "p", 16).names) == 10
    prepare("folder", tmp_path / "b", tmp_path / "p", labelled=2, size=16, overwrite=True)
    assert len(PreparedData.open(tmp_path / "p", 16).names) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "p"]  # no leftovers


def test_cli_refusal_is_one_line_and_exit_2(tmp_path, capsys):
    from clcc.cli import main

    _raw(tmp_path / "raw")
    code = main(["data", "prepare", "folder", "--source", str(tmp_path / "raw"),
                 "--output", str(tmp_path / "raw"), "--size", "16", "--labelled", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "lies inside the input" in err


def test_re_preparing_keeps_the_users_files_in_the_prepared_set(tmp_path):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, selections=(0, 1), size=16)
    (tmp_path / "p" / "NOTES.txt").write_text("my notes")
    (tmp_path / "p" / "runs" / "a").mkdir(parents=True)
    (tmp_path / "p" / "runs" / "a" / "best.pt").write_text("weights")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=3, selections=(0,), size=16,
            overwrite=True)
    assert (tmp_path / "p" / "NOTES.txt").read_text() == "my notes"
    assert (tmp_path / "p" / "runs" / "a" / "best.pt").read_text() == "weights"
    assert not (tmp_path / "p" / "splits" / "labelled-1.txt").exists()  # its own stale list
    assert len(PreparedData.open(tmp_path / "p", 16).labelled(0)) == 3


def test_re_preparing_refuses_to_replace_a_hand_edited_split_list(tmp_path):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    lists = tmp_path / "p" / "splits"
    edited = (lists / "labelled-0.txt").read_text().split()[:1]
    (lists / "labelled-0.txt").write_text("".join(f"{n}\n" for n in edited))
    with pytest.raises(ClccError, match=r"splits/labelled-0.txt edited by hand since `clcc data "
                       r"prepare` wrote it; pass --overwrite"):
        prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    assert (lists / "labelled-0.txt").read_text().split() == edited
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16, overwrite=True)
    assert len((lists / "labelled-0.txt").read_text().split()) == 2


@pytest.mark.parametrize("edit,message", [
    (("val.txt", "c_missing\n"), r"val.txt: unknown case 'c_missing'"),
    (("labelled-1.txt", "VAL0\n"), r"labelled-1.txt: case '\w+' is not in train.txt"),
    (("test.txt", "VAL0\n"), r"test.txt: case '\w+' is also in val.txt"),
])
def test_hand_edited_splits_are_checked_on_opening(tmp_path, edit, message):
    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    splits = tmp_path / "p" / "splits"
    val0 = (splits / "val.txt").read_text().split()[0]
    name, text = edit
    extra = text.replace("VAL0", val0)
    with open(splits / name, "a") as f:
        f.write(extra)
    with pytest.raises(ClccError, match=message):
        PreparedData.open(tmp_path / "p", 16)


def test_source_files_are_read_for_their_digest_once_until_touched(tmp_path):
    """`data_fingerprint(contents=True)` keeps each source file's SHA-256 in the set's cache by
    path, size and modification time: the kept digest is what it uses (so a file is not read
    again), and a touched file is read anew."""
    import hashlib
    import json

    from clcc.data.prepare import FILE_DIGESTS, data_fingerprint

    _raw(tmp_path / "raw")
    prepare("folder", tmp_path / "raw", tmp_path / "p", labelled=2, size=16)
    first = data_fingerprint(tmp_path / "p", 16, 0, contents=True)
    memo_path = tmp_path / "p" / "cache" / FILE_DIGESTS
    memo = json.loads(memo_path.read_text())
    image = sorted((tmp_path / "raw" / "images").iterdir())[0]
    assert memo[str(image)][2] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert len(memo) == 2 * 10  # every image and mask
    memo[str(image)][2] = "0" * 64  # a kept digest is trusted while size and time hold
    memo_path.write_text(json.dumps(memo))
    assert data_fingerprint(tmp_path / "p", 16, 0, contents=True) != first
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    assert data_fingerprint(tmp_path / "p", 16, 0, contents=True) == first  # read again
    assert data_fingerprint(tmp_path / "p", 16, 0) != data_fingerprint(tmp_path / "p", 16, 0,
                                                                      contents=True)
