import numpy as np
import pytest
from PIL import Image

from clcc.data.images import read_image, read_mask
from clcc.errors import ClccError


def test_grayscale_rgba_and_16bit_images_become_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    deep = (np.arange(12).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == (3, 4, 3) and g.dtype == np.uint8
    assert (g[..., 0] == grey).all() and (g[..., 2] == grey).all()
    a = read_image(tmp_path / "a.png")
    assert a.shape == (3, 4, 3) and (a[..., 0] == 200).all() and (a[..., 1] == 0).all()
    d = read_image(tmp_path / "d.png")
    assert d.shape == (3, 4, 3)
    assert d[2, 3, 0] == round(55000 / 65535 * 255) and d[0, 0, 0] == 0


def test_exif_rotated_jpeg_is_shown_upright(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "r.jpg")
    assert image.shape == (40, 20, 3)  # displayed portrait
    assert image[:10].mean() > 200 and image[-10:].mean() < 50  # left band became the top


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ClccError, match="broken.jpg: cannot read image"):
        read_image(bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: Image.fromarray(m.astype(np.uint8), "L"),  # 0/1
        lambda m: Image.fromarray(m.astype(np.uint8) * 255, "L"),  # 0/255
        lambda m: Image.fromarray(np.stack([m * 255, m * 0, m * 0], -1).astype(np.uint8)),  # red
        lambda m: Image.fromarray(m.astype(np.uint16) * 65535),  # 16-bit
    ],
    ids=["0-1", "0-255", "rgb-red", "16bit"],
)
def test_mask_formats_read_as_the_same_binary_mask(tmp_path, make):
    m = np.zeros((6, 5), np.uint8)
    m[1:4, 2:5] = 1
    make(m).save(tmp_path / "m.png")
    assert (read_mask(tmp_path / "m.png") == m.astype(bool)).all()


def test_palette_mask(tmp_path):
    m = np.zeros((6, 5), np.uint8)
    m[2:, :2] = 1
    img = Image.fromarray(m, "P")
    img.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    img.save(tmp_path / "p.png")
    assert (read_mask(tmp_path / "p.png") == m.astype(bool)).all()


def test_jpeg_mask_is_binarised_at_127(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    m = (((yy - 30) ** 2 + (xx - 35) ** 2) < 17**2).astype(np.uint8) * 255
    Image.fromarray(m).save(tmp_path / "m.jpg", quality=75)
    stored = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(stored)) > 2  # JPEG really left grey values
    assert (read_mask(tmp_path / "m.jpg") == (m > 0)).mean() > 0.99


def test_mask_of_another_size_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ClccError, match=r"m.png: mask is 6x4 but its image is 8x4"):
        read_mask(tmp_path / "m.png", expected_size=(8, 4))


def test_grey_picture_is_not_a_binary_mask(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 50).astype(np.uint8), (10, 1))
    Image.fromarray(ramp).save(tmp_path / "photo.png")
    with pytest.raises(ClccError, match="photo.png: not a binary mask"):
        read_mask(tmp_path / "photo.png")


def test_multiclass_label_map_is_refused(tmp_path):
    Image.fromarray(np.array([[0, 1, 2, 2]], np.uint8)).save(tmp_path / "lbl.png")
    with pytest.raises(ClccError, match="lbl.png: .*more than two classes"):
        read_mask(tmp_path / "lbl.png")
