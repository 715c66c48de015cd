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
    assert errors[0][1].endswith(": ValueError: truncated JPEG") and "gone" in errors[2][1]


# --- exact behaviour, pinned so that a changed constant or boundary fails (benchmarks/MUTATION.md)

def _torchvision_box(u, h, w, scale, ratio):
    """torchvision's own RandomResizedCrop.get_params, its random draws replaced by u in the
    order crop_box documents: area u[t], ratio u[10 + t], then top u[20] and left u[21]."""
    from unittest import mock

    import torch
    from torchvision.transforms import RandomResizedCrop

    order = iter([x for t in range(10) for x in (u[t], u[10 + t])])
    place = iter([u[20], u[21]])

    class Draw:
        def uniform_(self, lo, hi):
            lo, hi = float(lo), float(hi)
            return torch.tensor([lo + (hi - lo) * next(order)], dtype=torch.float64)

    def randint(lo, hi, size):
        return torch.tensor([lo + int(next(place) * (hi - lo))])

    with mock.patch.object(torch, "empty", lambda *a, **k: Draw()), \
            mock.patch.object(torch, "randint", randint), \
            mock.patch.object(torch, "log", lambda t: torch.tensor(np.log(t.double().numpy()))):
        return tuple(int(v) for v in RandomResizedCrop.get_params(
            torch.zeros(1, h, w), list(scale), list(ratio)))


@pytest.mark.parametrize("h, w, scale, ratio", [
    (300, 200, (0.8, 1.0), (3 / 4, 4 / 3)),  # the recipe's crop on a portrait frame
    (64, 64, (0.08, 1.0), (3 / 4, 4 / 3)),  # ImageNet's range
    (40, 200, (0.5, 1.0), (3 / 4, 4 / 3)),  # a strip: many tries fail, the fallback clamps
    (200, 40, (0.9, 1.0), (0.5, 2.0)),
    (50, 50, (1.0, 1.0), (1.0, 1.0)),  # no freedom: the whole frame
])
def test_crop_box_is_torchvisions_get_params(h, w, scale, ratio):
    u = keyed_uniform(row_keys(3, 1, np.arange(400)), Crops.DRAWS)
    for row in u:
        assert crop_box(row, h, w, scale, ratio) == _torchvision_box(row, h, w, scale, ratio)
    # The extremes of the placement draws reach both edges of the free range.
    lo, hi = np.zeros(Crops.DRAWS), np.zeros(Crops.DRAWS)
    hi[20:22] = np.nextafter(1, 0)
    for v in (lo, hi):
        assert crop_box(v, h, w, scale, ratio) == _torchvision_box(v, h, w, scale, ratio)


def test_crop_box_fallbacks_clamp_to_each_end_of_the_ratio_range():
    never = np.ones(Crops.DRAWS)
    assert crop_box(never, 200, 10, (1.0, 1.0), (3 / 4, 4 / 3)) == (93, 0, 13, 10)  # too tall
    assert crop_box(never, 30, 40, (2.0, 2.0), (3 / 4, 4 / 3)) == (0, 0, 30, 40)  # in range
    assert crop_box(never, 30, 40, (2.0, 2.0), (3 / 4, 4 / 3 - 1e-9))[2:] == (30, 40)
    assert crop_box(never, 40, 30, (2.0, 2.0), (3 / 4, 4 / 3)) == (0, 0, 40, 30)  # at 3/4


def test_resize_averages_only_beyond_a_1_5x_shrink():
    import cv2

    arr = np.random.default_rng(1).integers(0, 255, (60, 45, 3), np.uint8)
    # (width, height, area?): exactly 1.5x on a side is still bilinear; more is area
    for w, h, area in ((30, 40, False), (29, 60, True), (45, 39, True), (22, 60, True),
                       (45, 60, False), (90, 80, False)):
        mode = cv2.INTER_AREA if area else cv2.INTER_LINEAR
        np.testing.assert_array_equal(resize(arr, w, h), cv2.resize(arr, (w, h),
                                                                    interpolation=mode),
                                      err_msg=f"{w}x{h}")
        if (w, h) != (45, 60):  # the other mode gives other pixels, so the choice is seen
            other = cv2.INTER_LINEAR if area else cv2.INTER_AREA
            assert not np.array_equal(resize(arr, w, h), cv2.resize(arr, (w, h),
                                                                    interpolation=other))


def test_center_fraction_keeps_at_least_one_pixel_centred():
    arr = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3)
    np.testing.assert_array_equal(center_fraction(arr, 0.01), arr[3:4, 4:5])
    np.testing.assert_array_equal(center_fraction(arr, 0.5), arr[1:5, 2:6])  # 3.5, 4.5 -> 4


def _jpeg(h: int, w: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3), np.uint8)  # smooth, so scales agree
    return Image.fromarray(small).resize((w, h), Image.BILINEAR).tobytes("jpeg", "RGB")


def test_jpeg_reduced_decode_picks_the_smallest_scale_that_keeps_the_draft(monkeypatch):
    import cv2

    data = _jpeg(512, 400)
    for draft, side in ((50, 50), (51, 100), (100, 100), (101, 200), (200, 200), (201, 400)):
        arr = decode(data, draft_side=draft, short_side=400)
        assert min(arr.shape[:2]) == side, draft
    # OpenCV's decode, in RGB order, not PIL's: PIL is never opened for a whole JPEG of known
    # size (the fast path), and returns the same pixels when it is (the slow one).
    via_pil = decode(data, draft_side=100)
    monkeypatch.setattr("raysys.data.decode.Image.open", lambda *a: 1 / 0)
    fast = decode(data, draft_side=100, short_side=400)
    ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4),
                       cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(fast, ref)
    assert via_pil.shape == fast.shape and np.abs(via_pil.astype(int) - fast).mean() < 2


def test_grayscale_and_cmyk_jpegs_come_out_as_rgb_on_either_path():
    import io

    for mode, value, rgb in (("L", 77, (77, 77, 77)), ("CMYK", (0, 255, 255, 0), (255, 0, 0))):
        buf = io.BytesIO()
        Image.new(mode, (64, 48), value).save(buf, "JPEG")
        for short in (48, 0):  # OpenCV's reduced decode; PIL's
            arr = decode(buf.getvalue(), draft_side=48, short_side=short)
            assert arr.shape == (48, 64, 3)
            np.testing.assert_allclose(arr.reshape(-1, 3).mean(0), rgb, atol=2)


def test_max_pixels_refuses_only_above_the_limit():
    data = Image.new("RGB", (40, 30)).tobytes("jpeg", "RGB")
    assert decode(data, 30, max_pixels=1200).shape == (30, 40, 3)  # exactly the limit
    with pytest.raises(ValueError, match="^40x30 exceeds data.max_pixels$"):
        decode(data, 30, max_pixels=1199)


@pytest.mark.parametrize("dtype, fmt, mode", [("<u2", "PNG", "I;16"), (">u2", "TIFF", "I;16B"),
                                              ("<i4", "TIFF", "I")])
def test_integer_gray_is_scaled_by_the_image_maximum(dtype, fmt, mode):
    import io

    for values, want in (([0, 1, 2, 4], [0, 63, 127, 255]), ([0, 1], [0, 255]),
                         ([0, 0], [0, 0])):  # max 1 is full scale; all-black stays black
        buf = io.BytesIO()
        Image.fromarray(np.array([values], dtype)).save(buf, fmt)
        assert Image.open(buf).mode == mode
        out = decode(buf.getvalue(), 1)
        assert out[0, :, 0].tolist() == want and out.shape[2] == 3


def test_a_palette_with_transparency_decodes_without_a_warning(tmp_path):
    im = Image.new("P", (8, 8), 1)
    im.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)
    im.info["transparency"] = bytes([255, 0] + [255] * 254)  # bytes: PIL warns on RGB
    im.save(tmp_path / "t.png", transparency=bytes([255, 0] + [255] * 254))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode((tmp_path / "t.png").read_bytes(), 8)
    assert out[0, 0].tolist() == [200, 30, 10]


def _ramp(h: int, w: int) -> np.ndarray:
    """Each pixel says where it came from: R = column, G = row (smooth, so resizing keeps it)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w)[None, :]
    arr[..., 1] = np.arange(h)[:, None]
    return arr


def test_val_crop_resizes_the_short_side_then_takes_the_centre():
    c = crops(False)  # 32 px: short side to 37, centre 32
    out = c.crop(_ramp(74, 120), None)  # -> 37 x 60 (scale 1/2), centre 32: rows 2..33
    assert out.shape == (32, 32, 3)
    want = resize(_ramp(74, 120), 60, 37)[2:34, 14:46]
    np.testing.assert_array_equal(out, want)
    tall = c.crop(_ramp(120, 74), None)
    np.testing.assert_array_equal(tall, resize(_ramp(120, 74), 37, 60)[14:46, 2:34])
    tiny = c.crop(_ramp(10, 10), None)  # upscaled to 37, never below the crop
    assert tiny.shape == (32, 32, 3)


def test_train_crop_is_the_box_resized_and_flipped_by_the_last_draw():
    c = crops(True, "augment.hflip=0.5")
    arr = _ramp(60, 80)
    u = keyed_uniform(row_keys(0, 1, np.arange(1)), Crops.DRAWS)[0]
    top, left, h, w = crop_box(u, 60, 80, c.scale, c.ratio)
    box = resize(arr[top:top + h, left:left + w], 32, 32)
    u[-1] = 0.49
    np.testing.assert_array_equal(c.crop(arr, u), box[:, ::-1])
    u[-1] = 0.5
    np.testing.assert_array_equal(c.crop(arr, u), box)


def test_draft_side_keeps_enough_pixels_for_the_smallest_crop():
    train = crops(True, "augment.scale=0.25,1.0", "data.center_crop=0.5")
    assert train.draft_side == 128  # 32 / sqrt(0.25) / 0.5
    val = crops(False, "data.center_crop=0.5")
    assert val.draft_side == 74  # 32 * 256/224 / 0.5 = 73.1 -> 74


def _png(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_crops_call_uses_given_bytes_its_own_stream_and_the_pixel_cap(tmp_path):
    c = crops(True, "data.max_pixels=5000")
    good, big = _png(_ramp(60, 80)), _png(np.zeros((60, 100, 3), np.uint8))  # exact pixels
    long = "x" * 400  # never read: the bytes are given
    out, ok, errors = c([good, big], [long, "big.png"], np.array([60, 60]), np.array([2, 2]),
                        np.array([7, 8]))
    assert out.dtype == np.uint8 and ok.dtype == bool and ok.tolist() == [True, False]
    u = keyed_uniform(row_keys(0, np.array([2]), np.array([7])), Crops.DRAWS, stream=1)[0]
    np.testing.assert_array_equal(out[0], c.crop(_ramp(60, 80), u).transpose(2, 0, 1))
    assert errors == [(1, "big.png: ValueError: 100x60 exceeds data.max_pixels")]
    gone = str(tmp_path / ("y" * 200))
    _, _, [(_, msg)] = c([None], [gone], np.array([60]), np.array([1]), np.array([0]))
    assert len(msg) == 300 and msg.startswith(f"{gone}: FileNotFoundError: ")  # cut at 300


def test_read_file_reads_uris_through_storage(tmp_path):
    from raysys.data.decode import read_file

    (tmp_path / "a.bin").write_bytes(b"abc")
    assert read_file(f"file://{tmp_path}/a.bin") == b"abc" == read_file(str(tmp_path / "a.bin"))
