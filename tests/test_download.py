import stat
import zipfile
from pathlib import Path

import pytest

from clcc.data import download as dl
from clcc.errors import ClccError

from helpers import write_pair


def _kvasir_zip(tmp_path):
    src = tmp_path / "src" / "Kvasir-SEG"
    for name in ("a", "b"):
        write_pair(src / "images" / f"{name}.jpg", src / "masks" / f"{name}.jpg")
    archive = tmp_path / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent).as_posix())
    return archive, dl.content_digest(src)


def test_download_verifies_content_and_extracts(tmp_path, monkeypatch):
    archive, digest = _kvasir_zip(tmp_path)
    spec = dl.ARCHIVES["kvasir-seg"]
    monkeypatch.setitem(dl.ARCHIVES, "kvasir-seg", dl.Archive(spec.url, spec.top, digest))
    folder = dl.download("kvasir-seg", tmp_path / "out", url=archive.as_uri())
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["a.jpg", "b.jpg"]
    assert not (tmp_path / "out.zip").exists()


def test_checksum_mismatch_leaves_no_data(tmp_path):
    archive, _ = _kvasir_zip(tmp_path)  # real digest table: these files are not Kvasir-SEG
    with pytest.raises(ClccError, match="content checksum mismatch"):
        dl.download("kvasir-seg", tmp_path / "out", url=archive.as_uri())
    assert not (tmp_path / "out").exists()


def test_the_recorded_digest_matches_the_real_data_set(kvasir_dir):
    assert dl.content_digest(kvasir_dir) == dl.ARCHIVES["kvasir-seg"].content_sha256


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Kvasir-SEG/images/ok.jpg", b"x")
        zf.writestr("../../escaped.txt", b"pwned")
    with pytest.raises(ClccError, match="would be written outside"):
        dl.safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "target" / "Kvasir-SEG").exists()


def test_links_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("Kvasir-SEG/images/link.jpg")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ClccError, match="is a link"):
        dl.safe_extract(archive, tmp_path / "target")


@pytest.mark.parametrize("where", ["missing-file", "no-server"])
def test_failed_download_is_one_line_and_leaves_nothing(tmp_path, capsys, where):
    from clcc.cli import main

    url = ((tmp_path / "nope.zip").as_uri() if where == "missing-file"
           else "http://127.0.0.1:9/kvasir-seg.zip")  # port 9 (discard): nothing answers
    code = main(["data", "download", "kvasir-seg", "--output", str(tmp_path / "out"),
                 "--url", url])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "download failed" in err and url in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no archive, no folder


def test_no_archive_is_left_after_a_bad_archive(tmp_path):
    archive, _ = _kvasir_zip(tmp_path)
    with pytest.raises(ClccError, match="content checksum mismatch"):
        dl.download("kvasir-seg", tmp_path / "out", url=archive.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kvasir-seg.zip", "src"]


def test_escaping_member_names_the_users_folder(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../escaped.txt", b"pwned")
    with pytest.raises(ClccError, match=r"would be written outside .*data[/\\]kvasir$") as info:
        dl.download("kvasir-seg", tmp_path / "data" / "kvasir", url=archive.as_uri())
    assert ".tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]  # not even data/


def test_download_into_a_folder_of_the_users_files_is_refused(tmp_path, monkeypatch):
    archive, digest = _kvasir_zip(tmp_path)
    spec = dl.ARCHIVES["kvasir-seg"]
    monkeypatch.setitem(dl.ARCHIVES, "kvasir-seg", dl.Archive(spec.url, spec.top, digest))
    mine = tmp_path / "mydata"
    (mine / "my_masks").mkdir(parents=True)
    (mine / "annotations.csv").write_text("case,label\n")
    (mine / "my_masks" / "m.png").write_text("x")
    with pytest.raises(ClccError, match=r"mydata: a non-empty folder that `clcc data download` "
                       r"did not make; it is left untouched"):
        dl.download("kvasir-seg", mine, url=archive.as_uri())
    assert sorted(p.name for p in mine.rglob("*")) == ["annotations.csv", "m.png", "my_masks"]
    monkeypatch.chdir(mine)
    with pytest.raises(ClccError, match=r"did not make"):
        dl.download("kvasir-seg", Path("."), url=archive.as_uri())
    folder = dl.download("kvasir-seg", tmp_path / "fresh", url=archive.as_uri())
    (tmp_path / "fresh" / "notes.txt").write_text("mine")
    assert dl.download("kvasir-seg", tmp_path / "fresh", url=archive.as_uri()) == folder
    assert (tmp_path / "fresh" / "notes.txt").read_text() == "mine"  # again: only its files


def test_a_file_that_is_not_a_zip_is_one_line_and_makes_no_folder(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(ClccError, match=r"fake.zip: not a zip archive; nothing was written"):
        dl.download("kvasir-seg", tmp_path / "new" / "deeper" / "out", url=fake.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.zip"]
