"""Embedded demo data: procedurally drawn, learnable face-like pictures in the production layout.

    DIR/index_files/index_<name>.json   {"good": ["../images/<person>/<person>_NNNN.jpg", ...]}
    DIR/images/<person>/<person>_NNNN.jpg

Each name carries noisy tendencies (skin tone, hair colour and length, eye colour, head width,
background); each "person" under a name draws one consistent look from those tendencies; each
image jitters pose and light around that look. A small ViT can therefore learn names above
chance, but not trivially, and a person-disjoint split is meaningful.

`cue="gender"` plants gender and nothing else: the names of one gender (FIRST_NAMES alternate
male, female) share one set of tendencies, so a face says its name's gender but not which name
of that gender. A report on such data must find no name signal beyond gender (issue 27).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

FIRST_NAMES = (
    "alex maria john anna david laura michael sara james elena robert julia daniel sofia "
    "thomas emma peter olga mark nina paul lisa george irina kevin chloe brian hannah ivan "
    "lucia omar yuki tariq amara diego fatima kenji zara hugo ingrid pablo mei lars noor "
    "felix aisha bruno keiko"
).split()


def name_list(n: int) -> list[str]:
    if n <= len(FIRST_NAMES):
        return FIRST_NAMES[:n]
    return FIRST_NAMES + [f"name{i:03d}" for i in range(len(FIRST_NAMES), n)]


# The production set's shape (the seed's data card): 500 names, 434,528 images, these ten largest
# exactly, 153 names over 1,000 images, 283 over 500, 437 over 200, the smallest ~150.
PRODUCTION_TOP10 = (("alex", 5960), ("david", 5674), ("michael", 4801), ("laura", 4645),
                    ("sarah", 4473), ("daniel", 4217), ("john", 3794), ("chris", 3782),
                    ("james", 3736), ("amanda", 3428))
PRODUCTION_TOTAL = 434_528
PRODUCTION_KNOTS = ((10, 3428), (153, 1001), (283, 501), (437, 201), (500, 150))
PRODUCTION_CURVE = 2.2222733  # the bend between knots that makes the counts sum to the total


def production_counts() -> list[int]:
    """Image counts of the 500 production names, largest first: the top ten as in the seed,
    then a curve through the band thresholds (rank 153 at 1,001, 283 at 501, 437 at 201)."""
    rest = []
    for (r0, c0), (r1, c1) in zip(PRODUCTION_KNOTS, PRODUCTION_KNOTS[1:], strict=False):
        r = np.arange(r0 + 1, r1 + 1)
        rest.append(c1 + (c0 - c1) * ((r1 - r) / (r1 - r0)) ** PRODUCTION_CURVE)
    counts = [c for _, c in PRODUCTION_TOP10] + np.floor(np.concatenate(rest)).astype(int).tolist()
    counts[10] += PRODUCTION_TOTAL - sum(counts)  # the rounding remainder (a few images)
    return counts


# People per name in the production profile: one per ~40 images (alex: 149 people), each name
# at least 2, so that a person-disjoint split can hold out people of every name.
IMAGES_PER_PERSON = 40


def production_profile(images: int = PRODUCTION_TOTAL) -> tuple[list[str], list[int], list[int]]:
    """The production set's names, image counts and people per name, at `images` in all: the
    same shape scaled down (every name keeps at least one image) for the scale benchmark."""
    if images < 5 * len(production_counts()):
        raise ValueError(f"--images {images} is too few for the production profile's 500 names "
                         "(need 2,500)")
    full = np.array(production_counts())
    counts = np.maximum(1, np.floor(full * images / PRODUCTION_TOTAL)).astype(int)
    counts[0] += images - counts.sum()  # the rounding remainder goes to the largest name
    top = [n for n, _ in PRODUCTION_TOP10]
    names = top + [n for n in name_list(len(full) + len(top)) if n not in top][: len(full) - 10]
    people = np.maximum(2, np.ceil(counts / IMAGES_PER_PERSON)).astype(int)
    return names, counts.tolist(), people.tolist()


def power_law_counts(n_names: int, total: int, alpha: float = 0.8, minimum: int = 8) -> list[int]:
    """Counts that fall off like rank^-alpha (production: alex 5,960 ... ~200), summing to total."""
    if total < n_names * minimum:
        raise ValueError(f"--images {total} is too few for {n_names} names "
                         f"(need {n_names * minimum})")
    shares = 1.0 / np.arange(1, n_names + 1) ** alpha
    spare = total - n_names * minimum
    counts = minimum + np.floor(spare * shares / shares.sum()).astype(int)
    counts[0] += total - counts.sum()  # rounding leftovers go to the largest name
    return counts.tolist()


@dataclass(frozen=True)
class Look:
    """One person's consistent appearance, RGB colours as 0..255 floats."""

    skin: np.ndarray
    hair: np.ndarray
    eyes: np.ndarray
    background: np.ndarray
    head_width: float  # fraction of image width
    hair_length: float  # 0 = short cap, 1 = down to the chin
    glasses: bool


def _name_tendency(rng: np.random.Generator) -> dict:
    return {
        # Skin along a dark-brown .. light-beige line, so faces look like faces.
        "skin": np.array([70, 45, 30]) + rng.uniform(0, 1) * np.array([175, 170, 160]),
        "hair": rng.uniform(10, 230, 3),
        "eyes": rng.uniform(20, 200, 3),
        "background": rng.uniform(0, 255, 3),
        "head_width": rng.uniform(0.42, 0.62),
        "hair_length": rng.uniform(0.0, 1.0),
        "glasses": rng.uniform(0.0, 0.8),
    }


def _person_look(tendency: dict, rng: np.random.Generator) -> Look:
    # Noise is large enough that names overlap: the signal is a tendency, not a label.
    def jitter(colour, spread):
        return np.clip(colour + rng.normal(0, spread, 3), 0, 255)

    return Look(
        skin=jitter(tendency["skin"], 12),
        hair=jitter(tendency["hair"], 35),
        eyes=jitter(tendency["eyes"], 35),
        background=jitter(tendency["background"], 45),
        head_width=float(np.clip(tendency["head_width"] + rng.normal(0, 0.04), 0.35, 0.7)),
        hair_length=float(np.clip(tendency["hair_length"] + rng.normal(0, 0.2), 0, 1)),
        glasses=bool(rng.uniform() < tendency["glasses"]),
    )


def draw_face(look: Look, size: int, rng: np.random.Generator) -> Image.Image:
    """One picture of a person: pose, scale and light vary per image."""
    light = rng.uniform(0.8, 1.2)

    def colour(c):
        return tuple(int(v) for v in np.clip(c * light + rng.normal(0, 6, 3), 0, 255))

    img = Image.new("RGB", (size, size), colour(look.background))
    d = ImageDraw.Draw(img)
    cx = size * (0.5 + rng.normal(0, 0.03))
    cy = size * (0.52 + rng.normal(0, 0.03))
    scale = rng.uniform(0.9, 1.1)
    hw = size * look.head_width * scale / 2
    hh = hw * 1.3
    hair_bottom = cy - hh * 0.3 + look.hair_length * hh * 1.2
    d.ellipse([cx - hw * 1.12, cy - hh * 1.15, cx + hw * 1.12, hair_bottom], fill=colour(look.hair))
    d.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=colour(look.skin))
    d.chord([cx - hw, cy - hh * 1.08, cx + hw, cy - hh * 0.1], 180, 360, fill=colour(look.hair))
    eye_y, eye_dx, eye_r = cy - hh * 0.1, hw * 0.42, max(1.0, hw * 0.12)
    for ex in (cx - eye_dx, cx + eye_dx):
        d.ellipse([ex - eye_r * 1.6, eye_y - eye_r, ex + eye_r * 1.6, eye_y + eye_r], fill="white")
        d.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=colour(look.eyes))
        if look.glasses:
            r = eye_r * 2.2
            d.ellipse([ex - r, eye_y - r, ex + r, eye_y + r], outline=(20, 20, 20),
                      width=max(1, size // 96))
    mouth_y = cy + hh * 0.5
    d.line([cx - hw * 0.35, mouth_y, cx + hw * 0.35, mouth_y], fill=(120, 40, 40),
           width=max(1, size // 64))
    return img


def generate(out: Path, names: int = 12, size: int = 512, images: int = 1200, seed: int = 0,
             people_per_name: int = 5, profile: str = "power-law", cue: str = "name") -> Path:
    """Write the demo set under `out`; returns the index_files folder. Same seed, same bytes.
    profile "production": the production set's 500 names and shape at `images` (`names` and
    `people_per_name` are then the profile's). cue "gender": tendencies per gender, not per
    name."""
    rng = np.random.default_rng(seed)
    index_dir = out / "index_files"
    index_dir.mkdir(parents=True, exist_ok=True)
    if profile == "production":
        name_ids, counts, people = production_profile(images)
    else:
        name_ids, counts = name_list(names), power_law_counts(names, images)
        people = [people_per_name] * names
    # cue="gender": one set of tendencies per gender (male, female), drawn only then, so the
    # default data stays byte-identical
    by_gender = [_name_tendency(rng), _name_tendency(rng)] if cue == "gender" else []
    for i, (name, count, k) in enumerate(zip(name_ids, counts, people, strict=True)):
        tendency = _name_tendency(rng) if cue == "name" else by_gender[i % 2]
        looks = [_person_look(tendency, rng) for _ in range(k)]
        # Uneven people per name, as in real data where one person can own most of a name.
        owner = rng.choice(k, size=count, p=_dirichlet_shares(rng, k))
        paths = []
        for j, p in enumerate(owner):
            person = f"{name}_person{p:02d}"
            rel = f"../images/{person}/{person}_{j:04d}.jpg"
            (index_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            draw_face(looks[p], size, rng).save(buf, format="JPEG", quality=90)
            (index_dir / rel).write_bytes(buf.getvalue())
            paths.append(rel)
        (index_dir / f"index_{name}.json").write_text(json.dumps({"good": paths, "bad": []}))
    return index_dir


def _dirichlet_shares(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.dirichlet(np.full(k, 2.0))
