"""The floors every run is judged against, computed once per manifest and split and cached
beside the manifest (floors-<digest>.json):

- **pixel-linear**: logistic regression on PCA-100 of 32x32 grayscale pixels (after the same
  centre crop as training), trained on the train split, scored on val. A ViT that does not
  beat a linear model on raw pixels has a recipe problem, not a data problem.
- **metadata probe**: logistic regression on what an image is apart from the face: width,
  height, aspect ratio, file size, mean RGB, brightness and a grayscale flag. What it scores
  above chance is name signal outside the face (an earlier attempt was undone by an
  aspect-ratio confound).

Both use balanced class weights, like the default training loss, and report top-1 and balanced
accuracy on val, with their per-image predictions (`preds`, in `val_rows` order) for the
report's paired intervals. They fit on at most data.floor_sample train images (a seeded
sample, each name in proportion), so their cost stops growing with the data: one lbfgs
iteration over all 347k production train images at 500 names takes ~4 s, and the pixel floor
runs to its iteration limit. Every val image is scored.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raysys import storage
from raysys.config import DataConfig
from raysys.data.decode import center_fraction
from raysys.data.manifest import read_manifest
from raysys.data.source import path_manifest
from raysys.parallel import map_chunks

PIXELS = 32
MAX_ITER = 1000
PREDICT_CHUNK = 8192  # val rows per predict call: float copies of 87k x 1024 pixels are 360 MB
META = ("width", "height", "aspect", "kbytes", "mean_r", "mean_g", "mean_b", "brightness",
        "grayscale")


def image_features(path: str, fraction: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(1024 grayscale pixels as uint8, 5 colour statistics) or None if undecodable."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (4 * PIXELS, 4 * PIXELS))
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except Exception:
        return None
    mean = rgb.reshape(-1, 3).mean(axis=0)
    gray_flag = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max() < 2 / 255)
    crop = center_fraction(rgb, fraction)
    small = Image.fromarray(np.uint8(crop * 255)).convert("L").resize((PIXELS, PIXELS),
                                                                       Image.BILINEAR)
    colour = np.array([*mean, float(mean @ np.array([0.299, 0.587, 0.114])), gray_flag],
                      np.float32)
    return np.asarray(small, np.uint8).ravel(), colour


def train_sample(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices of at most ~cap rows, each label in proportion (at least one row each), sorted;
    all rows when there are no more than cap."""
    if len(labels) <= cap:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    groups = np.split(order, np.cumsum(sizes)[:-1])
    keep = [rng.choice(g, max(1, int(len(g) * cap / len(labels))), replace=False)
            for g in groups if len(g)]
    return np.sort(np.concatenate(keep))


def _predict(model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict(x[i:i + PREDICT_CHUNK].astype(np.float32))
                           for i in range(0, len(x), PREDICT_CHUNK)])


def _score(model, x_train, y_train, x_val, y_val) -> dict:
    """Top-1 and balanced accuracy on val, and the per-image predictions the report's paired
    intervals need (in val's manifest row order)."""
    with warnings.catch_warnings():  # convergence chatter, and names absent from val
        warnings.simplefilter("ignore")
        model.fit(x_train.astype(np.float32), y_train)
        pred = _predict(model, x_val)
        return {"top1": float((pred == y_val).mean()),
                "balanced_acc": float(balanced_accuracy_score(y_val, pred)),
                "iterations": int(np.max(model[-1].n_iter_)),
                "preds": [int(p) for p in pred]}


def compute_floors(data: DataConfig, seed: int = 0) -> dict:
    """The floors of data.manifest's split at data.top_k and data.center_crop, cached."""
    manifest = path_manifest(data.manifest)
    # Keyed on the manifest's bytes, not its path: a manifest rebuilt in place with another
    # split must not reuse the old split's floors.
    content = hashlib.blake2b(storage.read_bytes(manifest), digest_size=16).hexdigest()
    key = json.dumps({"manifest": content, "top_k": data.top_k,
                      "center_crop": data.center_crop, "seed": seed,
                      "sample": data.floor_sample, "v": 4}, sort_keys=True)
    cache = storage.join(storage.parent(manifest), "floors-" + hashlib.blake2b(
        key.encode(), digest_size=6).hexdigest() + ".json")
    if storage.exists(cache):
        return storage.read_json(cache)
    df = read_manifest(manifest)
    if data.top_k:
        df = df[df["label"] < data.top_k]
    is_train = (df["split"] == "train").to_numpy()
    train_rows = np.flatnonzero(is_train)
    fit_rows = train_rows[train_sample(df["label"].to_numpy()[train_rows], data.floor_sample,
                                          seed)]
    df = df.iloc[np.sort(np.concatenate([fit_rows, np.flatnonzero(~is_train)]))]
    feats = list(map_chunks(image_features, df["path"].tolist(), data.center_crop,
                            what="floors"))
    ok = np.array([f is not None for f in feats])
    df = df[ok].reset_index(drop=True)
    pixels = np.stack([f[0] for f in feats if f is not None])
    colour = np.stack([f[1] for f in feats if f is not None])
    del feats
    meta = np.column_stack([df["width"], df["height"], df["width"] / df["height"],
                            df["bytes"] / 1024, colour]).astype(np.float64)
    train = (df["split"] == "train").to_numpy()
    y = df["label"].to_numpy()
    components = int(min(100, train.sum() - 1, pixels.shape[1]))
    lr = {"max_iter": MAX_ITER, "class_weight": "balanced"}
    sample = (f", fit on a sample of {int(train.sum()):,} of {len(train_rows):,} train images"
              if len(fit_rows) < len(train_rows) else "")
    result = {
        "pixel_linear": _score(make_pipeline(StandardScaler(), PCA(components, random_state=seed),
                                             LogisticRegression(**lr)),
                               pixels[train], y[train], pixels[~train], y[~train]),
        "metadata_probe": _score(make_pipeline(StandardScaler(), LogisticRegression(**lr)),
                                 meta[train], y[train], meta[~train], y[~train]),
        "chance": {"uniform": 1.0 / len(np.unique(y))},
        "images": {"train": int(train.sum()), "val": int((~train).sum()),
                   "train_all": len(train_rows)},
        "val_rows": [int(r) for r in df.loc[~train, "row"]],
        "features": {"pixels": f"{PIXELS}x{PIXELS} grayscale, PCA-{components}{sample}",
                     "metadata": list(META)},
        "center_crop": data.center_crop, "top_k": data.top_k,
    }
    storage.write_json(cache, result)
    return result
