import pytest

from clcc.data.layouts import read_layout
from clcc.errors import ClccError

from helpers import write_pair


def test_kvasir_layout(tmp_path):
    for name in ("b", "a"):
        write_pair(tmp_path / "images" / f"{name}.jpg", tmp_path / "masks" / f"{name}.jpg")
    cases = read_layout("kvasir-seg", tmp_path).cases
    assert [c.name for c in cases] == ["a", "b"]
    assert cases[0].mask == tmp_path / "masks" / "a.jpg"


def test_isic_layout_strips_the_segmentation_suffix(tmp_path):
    for i in (1, 2):
        write_pair(
            tmp_path / "ISIC2018_Task1-2_Training_Input" / f"ISIC_000000{i}.jpg",
            tmp_path / "ISIC2018_Task1_Training_GroundTruth" / f"ISIC_000000{i}_segmentation.png",
        )
    (tmp_path / "ISIC2018_Task1-2_Training_Input" / "ATTRIBUTION.txt").write_text("x")
    cases = read_layout("isic2018", tmp_path).cases
    assert [c.name for c in cases] == ["ISIC_0000001", "ISIC_0000002"]
    assert cases[1].mask.name == "ISIC_0000002_segmentation.png"


def test_generic_folder_with_unlabelled_images(tmp_path):
    write_pair(tmp_path / "images" / "x.png", tmp_path / "masks" / "x.png")
    write_pair(tmp_path / "images" / "y.jpg", None)  # no mask: unlabelled
    write_pair(tmp_path / "unlabelled" / "z.png", None)
    cases = {c.name: c for c in read_layout("folder", tmp_path).cases}
    assert cases["x"].mask is not None
    assert cases["y"].mask is None and cases["z"].mask is None


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ClccError, match="no images found"):
        read_layout("kvasir-seg", tmp_path)
    with pytest.raises(ClccError, match="no images found"):
        read_layout("folder", tmp_path)


def test_duplicate_stems_are_refused(tmp_path):
    write_pair(tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png")
    write_pair(tmp_path / "images" / "a.jpg", None)
    with pytest.raises(ClccError, match=r"duplicate case name 'a': .*a.jpg and .*a.png"):
        read_layout("folder", tmp_path)


def test_mask_without_image_and_missing_mask(tmp_path):
    write_pair(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "a.jpg")
    write_pair(tmp_path / "images" / "b.jpg", None)
    with pytest.raises(ClccError, match=r"b.jpg: no mask"):
        read_layout("kvasir-seg", tmp_path)
    write_pair(tmp_path / "other" / "c.jpg", tmp_path / "masks" / "c.jpg")
    with pytest.raises(ClccError, match=r"c.jpg: mask without an image"):
        read_layout("folder", tmp_path)


def test_unknown_source_and_missing_folder(tmp_path):
    with pytest.raises(ClccError, match="unknown data source 'dicom'; choose one of"):
        read_layout("dicom", tmp_path)
    with pytest.raises(ClccError, match="source folder not found"):
        read_layout("folder", tmp_path / "nope")
