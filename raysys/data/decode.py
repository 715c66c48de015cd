"""Pure image work, no Ray: bytes -> RGB array -> the training or val crop, as uint8.

The decode actors (stream.py) run `Crops` on every batch; the report (attention maps) runs the
same `Crops` on a few val images, so what it shows is exactly what the model saw.

Randomness of crop and flip is a function of (run seed, epoch, row), never of which actor
decodes the image: a resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from raysys import storage
from raysys.config import AugmentConfig, DataConfig
from raysys.data.formats import TAIL_BYTES, is_jpeg, jpeg_is_whole
from raysys.keyed_random import keyed_uniform, row_keys

VAL_RESIZE_RATIO = 256 / 224  # the seed's resize-256 / center-crop-224, at any img_size
DECODE_STREAM = 1  # keyed_random stream id of the crops
CROP_TRIES = 10
REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))


def decode(data: bytes, draft_side: int, short_side: int = 0, max_pixels: int = 0
           ) -> np.ndarray:
    """RGB uint8 (H, W, 3) with the shorter side no less than draft_side.

    JPEGs of known size (nearly all the data) use OpenCV's reduced decode, which scales by
    1/2^k inside the DCT like PIL's draft mode but runs ~30% faster; anything else goes
    through PIL, which also turns grayscale, CMYK, palette, 16-bit and alpha into RGB."""
    if is_jpeg(data) and short_side:
        if not jpeg_is_whole(data[-TAIL_BYTES:]):
            raise ValueError("truncated JPEG")
        flag = next(f for k, f in REDUCED_JPEG if k == 1 or short_side // k >= draft_side)
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if arr is not None and arr.ndim == 3:
            return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    im = Image.open(io.BytesIO(data))
    if max_pixels and im.width * im.height > max_pixels:  # header only: no decode yet
        raise ValueError(f"{im.width}x{im.height} exceeds data.max_pixels")
    im.draft("RGB", (draft_side, draft_side))  # the largest 1/2^k scale still >= the request
    if im.mode.startswith("I"):  # integer gray (16- or 32-bit): scale, don't clip
        arr16 = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.uint8(arr16 / max(arr16.max(), 1) * 255)).convert("RGB")
    elif im.mode != "RGB":
        im = im.convert("RGB")  # L, LA, P (with or without transparency), RGBA, CMYK, ...
    return np.asarray(im)


def resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear; area averaging only when shrinking by more than 1.5x, where bilinear would
    alias (INTER_AREA costs ~4x more at the ~1.1x shrink of a 256 px draft to a 224 crop)."""
    big_shrink = arr.shape[0] > 1.5 * height or arr.shape[1] > 1.5 * width
    return cv2.resize(arr, (width, height),
                      interpolation=cv2.INTER_AREA if big_shrink else cv2.INTER_LINEAR)


def center_fraction(arr: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of each side (LFW frames hold the face in the central half)."""
    if fraction >= 1:
        return arr
    h, w = arr.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]


def crop_box(u: np.ndarray, h: int, w: int, scale: tuple[float, float],
             ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, driven by uniforms u (2 * tries + 2)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(CROP_TRIES):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[t])
        aspect = math.exp(log_r[0] + (log_r[1] - log_r[0]) * u[CROP_TRIES + t])
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(u[2 * CROP_TRIES] * (h - ch + 1))
            left = int(u[2 * CROP_TRIES + 1] * (w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h  # fallback: the whole image, clamped to the ratio range
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def read_file(path: str) -> bytes:
    if storage.is_uri(path):
        return storage.read_bytes(path)
    with open(path, "rb") as fh:
        return fh.read()


class Crops:
    """Encoded images -> (B, 3, img_size, img_size) uint8. Train: RandomResizedCrop(scale,
    ratio) + flip, drawn from (seed, epoch, row); val: resize to img_size x 256/224, centre
    crop. Both after keeping data.center_crop of each side."""

    DRAWS = 2 * CROP_TRIES + 2 + 1  # crop tries (area, ratio), position, flip

    def __init__(self, data: DataConfig, aug: AugmentConfig, seed: int, train: bool):
        self.train, self.seed = train, seed
        self.size, self.fraction, self.max_pixels = data.img_size, data.center_crop, \
            data.max_pixels
        self.scale, self.ratio, self.hflip = tuple(aug.scale), tuple(aug.ratio), aug.hflip
        # The draft decode keeps just enough pixels: the smallest crop area still spans
        # sqrt(scale_min) of the (center-cropped) side.
        need = self.size / math.sqrt(self.scale[0]) if train else self.size * VAL_RESIZE_RATIO
        self.draft_side = math.ceil(need / self.fraction)

    def __call__(self, encoded: Sequence[bytes | None], paths: Sequence[str],
                 short: np.ndarray, epoch: np.ndarray, row: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """(images, ok mask, [(index, what went wrong)]). `encoded[i]` None: read paths[i].
        One bad image is a row dropped and reported, never an exception."""
        n = len(row)
        out = np.zeros((n, 3, self.size, self.size), dtype=np.uint8)
        ok = np.zeros(n, dtype=bool)
        u = keyed_uniform(row_keys(self.seed, epoch, row), self.DRAWS, stream=DECODE_STREAM) \
            if self.train else None
        errors: list[tuple[int, str]] = []
        for i in range(n):
            try:
                data = encoded[i] if encoded[i] is not None else read_file(paths[i])
                arr = decode(data, self.draft_side, int(short[i]), self.max_pixels)
                out[i] = self.crop(arr, u[i] if u is not None else None).transpose(2, 0, 1)
                ok[i] = True
            except Exception as e:
                errors.append((i, f"{paths[i]}: {type(e).__name__}: {e}"[:300]))
        return out, ok, errors

    def crop(self, arr: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        """(H, W, 3) uint8 -> (img_size, img_size, 3) uint8."""
        s = self.size
        arr = center_fraction(arr, self.fraction)
        h, w = arr.shape[:2]
        if u is not None:
            top, left, ch, cw = crop_box(u, h, w, self.scale, self.ratio)
            arr = resize(arr[top:top + ch, left:left + cw], s, s)
            return np.ascontiguousarray(arr[:, ::-1]) if u[-1] < self.hflip else arr
        scale = round(s * VAL_RESIZE_RATIO) / min(w, h)
        rw, rh = max(s, round(w * scale)), max(s, round(h * scale))
        left, top = (rw - s) // 2, (rh - s) // 2
        return resize(arr, rw, rh)[top:top + s, left:left + s]
