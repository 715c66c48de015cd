"""Pure decode and crops (raysys/data/decode.py), no Ray: every colour mode to the right RGB
values, crops inside the image with the asked area and ratio, the same draws whichever process
decodes, bad images dropped and named rather than raised."""

import numpy as np
import pytest
from PIL import Image

from raysys.config import load_config
from raysys.data.decode import VAL_RESIZE_RATIO, Crops, center_fraction, crop_box, decode, resize
from raysys.keyed_random import keyed_uniform, row_keys


def crops(train: bool, *sets: str) -> Crops:
    cfg = load_config("micro", sets=list(sets))
    return Crops(cfg.data, cfg.augment, seed=0, train=train)


def run(c: Crops, paths: list[str], width: int = 80, height: int = 60, epoch: int = 1,
        rows=None):
    n = len(paths)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    return c([None] * n, paths, np.full(n, min(width, height)), np.full(n, epoch), rows)


def test_crop_box_stays_inside_with_the_asked_area_and_ratio():
    u = keyed_uniform(row_keys(0, 1, np.arange(2000)), Crops.DRAWS)
    for row in u:
        top, left, h, w = crop_box(row, 300, 200, (0.8, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 200
        assert 0.75 <= h * w / 60000 <= 1.0 + 1e-2
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_crop_box_falls_back_to_the_clamped_whole_image():
    never = np.ones(Crops.DRAWS)  # area 1.0 at the widest ratio: never fits a 10x200 strip
    assert crop_box(never, 10, 200, (1.0, 1.0), (3 / 4, 4 / 3)) == (0, 93, 10, 13)


def test_center_fraction_and_resize():
    arr = np.arange(100 * 60 * 3, dtype=np.uint8).reshape(100, 60, 3)
    mid = center_fraction(arr, 0.5)
    assert mid.shape == (50, 30, 3) and np.array_equal(mid, arr[25:75, 15:45])
    assert center_fraction(arr, 1.0) is arr
    assert resize(arr, 30, 40).shape == (40, 30, 3)


# flat colour per mode -> the RGB every mode must come out as (JPEG within a few levels)
COLOURS = {
    "rgb.jpg": ("RGB", (200, 30, 10), (200, 30, 10)),
    "l.jpg": ("L", 100, (100, 100, 100)),
    "cmyk.jpg": ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    "p.png": ("P", (200, 30, 10), (200, 30, 10)),
    "rgba.png": ("RGBA", (10, 200, 30, 128), (10, 200, 30)),
    "la.png": ("LA", (120, 255), (120, 120, 120)),
    "palette.gif": ("GIF", (30, 60, 220), (30, 60, 220)),
}


def _flat(path, mode, value, size=(80, 60)):
    if mode in ("P", "GIF"):
        Image.new("RGB", size, value).convert("P", palette=Image.ADAPTIVE).save(path)
    else:
        Image.new(mode, size, value).save(path)
    return str(path)


@pytest.mark.parametrize("train", [False, True])
def test_every_colour_mode_decodes_to_its_rgb(tmp_path, train):
    paths = [_flat(tmp_path / f, mode, value) for f, (mode, value, _) in COLOURS.items()]
    images, ok, errors = run(crops(train), paths)
    assert ok.all() and not errors and images.shape == (len(paths), 3, 32, 32)
    for image, (name, (_, _, rgb)) in zip(images, COLOURS.items(), strict=True):
        got = image.reshape(3, -1).mean(axis=1)
        np.testing.assert_allclose(got, rgb, atol=6, err_msg=name)  # RGB order, not BGR


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    arr = np.full((60, 80), 16384, np.uint16)
    arr[:, 40:] = 65535  # left a quarter of full scale, right full scale
    Image.fromarray(arr).save(tmp_path / "i16.png")
    images, ok, _ = run(crops(False), [str(tmp_path / "i16.png")])
    # val: resize the short side to 37 (32 x 256/224), centre crop 32: column 2 reads x ~ 16 of
    # the original, column 29 x ~ 60
    assert round(32 * VAL_RESIZE_RATIO) == 37
    assert ok.all() and abs(int(images[0, 0, 16, 2]) - 64) <= 1 and images[0, 0, 16, 29] == 255


def test_jpeg_reduced_decode_keeps_the_draft_side():
    big = np.random.default_rng(0).integers(0, 255, (512, 400, 3), np.uint8)
    data = Image.fromarray(big).tobytes("jpeg", "RGB")
    arr = decode(data, draft_side=100, short_side=400)
    assert min(arr.shape[:2]) >= 100 and min(arr.shape[:2]) == 100  # 400 / 4, not 400


def test_draws_are_a_function_of_seed_epoch_and_row(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), np.uint8)).save(p)
    c = crops(True, "augment.scale=0.5,1.0")
    a, _, _ = run(c, [str(p)] * 3, 70, 90, epoch=2, rows=[4, 4, 5])
    b, _, _ = run(crops(True, "augment.scale=0.5,1.0"), [str(p)] * 3, 70, 90, epoch=2,
                  rows=[4, 4, 5])
    later, _, _ = run(c, [str(p)], 70, 90, epoch=3, rows=[4])
    np.testing.assert_array_equal(a, b)  # another process, same draws
    assert np.array_equal(a[0], a[1])  # same (epoch, row)
    assert not np.array_equal(a[0], a[2])  # another row
    assert not np.array_equal(a[0], later[0])  # another epoch


def test_bad_images_are_dropped_and_named_not_raised(tmp_path):
    good = _flat(tmp_path / "ok.jpg", "RGB", (1, 2, 3))
    (tmp_path / "cut.jpg").write_bytes(open(good, "rb").read()[:200])
    (tmp_path / "junk.jpg").write_text("not an image")
    paths = [good, str(tmp_path / "cut.jpg"), str(tmp_path / "junk.jpg"), str(tmp_path / "gone")]
    _, ok, errors = run(crops(False), paths)
    assert ok.tolist() == [True, False, False, False]
    assert [i for i, _ in errors] == [1, 2, 3]
    assert "truncated JPEG" in errors[0][1] and "gone" in errors[2][1]
