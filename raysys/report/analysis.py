"""What a run is read by, computed from its own files: calibration (ECE), accuracy by class
frequency, a class-balanced view, identity leakage, and the post-hoc skew trade-off."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from raysys.report.intervals import ClusterBootstrap, Interval

# Production bands, in train images per name: Many > 1000, Medium 200-1000, Few < 200, for a
# largest name of ~4,770 train images (alex's 5,960 at an 80/20 split).
BANDS = (1000, 200)
PRODUCTION_LARGEST = 4768


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15
        ) -> tuple[float, list[dict]]:
    """Expected calibration error: the image-weighted mean |accuracy - confidence| over equal
    -width confidence bins (Guo et al. 2017). Returns it and the per-bin table."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 goes to the first bin.
    # Only the inner edges are given, so every index is already in 0..bins-1.
    which = np.digitize(confidence, edges[1:-1], right=True)
    table, total = [], 0.0
    for i in range(bins):
        mask = which == i
        n = int(mask.sum())
        acc = float(correct[mask].mean()) if n else float("nan")
        conf = float(confidence[mask].mean()) if n else float("nan")
        if n:
            total += n / len(confidence) * abs(acc - conf)
        table.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": n,
                      "accuracy": acc, "confidence": conf})
    return float(total), table


def frequency_bands(train_counts: np.ndarray) -> tuple[float, float]:
    """The Many/Medium/Few thresholds, scaled to this data set's largest name (never above
    the production ones)."""
    scale = min(1.0, float(np.max(train_counts)) / PRODUCTION_LARGEST)
    return BANDS[0] * scale, BANDS[1] * scale


def band_accuracy(labels: np.ndarray, preds: np.ndarray, train_counts: np.ndarray) -> list[dict]:
    """Per band, the mean per-name accuracy (recall) over the band's names present in val, as
    in the long-tail literature (Liu et al. 2019): pooling the band's images instead would let
    its largest names speak for it."""
    many, few = frequency_bands(train_counts)
    band_of = np.where(train_counts > many, "Many", np.where(train_counts >= few, "Medium",
                                                             "Few"))
    rows = []
    for band, rule in (("Many", f"> {many:.0f}"), ("Medium", f"{few:.0f}-{many:.0f}"),
                       ("Few", f"< {few:.0f}")):
        names = np.flatnonzero(band_of == band)
        recalls = [float((preds[labels == c] == c).mean()) for c in names if (labels == c).any()]
        rows.append({"band": band, "train images per name": rule, "names": len(names),
                     "names in val": len(recalls),
                     "val images": int(np.isin(labels, names).sum()),
                     "accuracy": float(np.mean(recalls)) if recalls else float("nan")})
    return rows


def balanced_subset(labels: np.ndarray, preds: np.ndarray, seed: int = 0, cap: int = 50
                    ) -> dict:
    """Top-1 and balanced accuracy on a class-balanced val subset: the same number of images
    per name present (the smallest name's count, at most `cap`), drawn with a fixed seed. The
    earlier CLIP and CNN numbers were measured this way."""
    rng = np.random.default_rng(seed)
    present, counts = np.unique(labels, return_counts=True)
    per = int(min(cap, counts.min())) if len(counts) else 0
    pick = np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False)
                           for c in present]) if per else np.zeros(0, int)
    with warnings.catch_warnings():  # predictions outside the subset's names are expected
        warnings.simplefilter("ignore", UserWarning)
        return {"per_name": per, "images": int(len(pick)),
                "top1": float((preds[pick] == labels[pick]).mean()) if len(pick)
                else float("nan"),
                "balanced_acc": float(balanced_accuracy_score(labels[pick], preds[pick]))
                if len(pick) else float("nan")}


def identity_leakage(val_groups: np.ndarray, train_groups: set, labels: np.ndarray,
                     preds: np.ndarray, majority: int | None = None) -> dict:
    """Val accuracy on images whose person also has train images ("seen"), and on those whose
    person does not ("unseen"). Images with no person id are neither, and are counted apart.

    The seen/unseen gap means nothing alone: the two sets hold different names in different
    proportions, so even "always the largest train name" (`majority`) shows a gap. The same
    gap for that constant guess is the baseline the model's gap is read against."""
    known = np.array([g is not None and g == g for g in val_groups], dtype=bool)  # NaN != NaN
    seen = known & np.array([g in train_groups for g in val_groups], dtype=bool)
    out = {"ungrouped": int((~known).sum())}
    for key, mask in (("seen", seen), ("unseen", known & ~seen)):
        out[key] = {"images": int(mask.sum()),
                    "top1": float((preds[mask] == labels[mask]).mean()) if mask.any()
                    else float("nan"),
                    "majority_top1": float((labels[mask] == majority).mean())
                    if mask.any() and majority is not None else float("nan")}
    return out


def within_name_gap(boot: ClusterBootstrap, seen: np.ndarray, preds: np.ndarray
                    ) -> Interval | None:
    """Recall on seen people minus recall on unseen people of the same name, summed over the
    names that have both with weights q_seen(n), the share of the seen images that are name
    n's: sum_n q_seen(n) (r_seen(n) - r_unseen(n)). Comparing each name with itself removes
    the two sets' different name mixes, which alone give a constant guess a gap. None when no
    name has both."""
    groups = boot.label_inv * 2 + seen.astype(np.int64)

    def gap(h: np.ndarray, n: np.ndarray) -> np.ndarray:
        hs, ns, hu, nu = h[:, 1::2], n[:, 1::2], h[:, 0::2], n[:, 0::2]
        both = (ns > 0) & (nu > 0)
        q = np.where(both, ns, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = q / q.sum(axis=1, keepdims=True)
            return np.nansum(q * (hs / np.where(both, ns, 1) - hu / np.where(both, nu, 1)),
                             axis=1) + np.where(both.any(axis=1), 0.0, np.nan)

    hits = preds == boot.labels
    if not len(hits) or not ((np.bincount(groups, minlength=2 * boot.k + 2)
                              .reshape(-1, 2) > 0).all(axis=1)).any():
        return None
    return boot.grouped(hits, groups, 2 * boot.k, gap)


def confusion_with_other(labels: np.ndarray, preds: np.ndarray, top: int) -> np.ndarray:
    """(top, top + 1): for each of the `top` largest names (labels 0..top-1), the share of its
    val images predicted as each of them, and in the last column as any other name, so that
    every row sums to 1 over all its predictions."""
    cm = np.zeros((top, top + 1))
    keep = labels < top
    np.add.at(cm, (labels[keep], np.minimum(preds[keep], top)), 1)
    return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)


@dataclass
class TauChoice:
    rows: list[dict]
    best: dict | None  # the tau with relative pred CV < target and the best top-1, if any


def tau_tradeoff(entry: dict, target: float = 0.30) -> TauChoice:
    """Top-1, balanced accuracy and relative prediction CV for each post-hoc tau (0 = the
    model's own argmax), and the tau that meets the CV target with the best top-1."""
    rows = [{"tau": 0.0, "top1": entry["val/top1"], "balanced_acc": entry["val/balanced_acc"],
             "rel_pred_cv": entry["val/rel_pred_cv"]}]
    for key in sorted(k for k in entry if k.startswith("posthoc_tau") and k.endswith("/top1")):
        tau = float(key.split("/")[0][len("posthoc_tau"):])
        rows.append({"tau": tau, "top1": entry[key],
                     "balanced_acc": entry[f"posthoc_tau{tau}/balanced_acc"],
                     "rel_pred_cv": entry[f"posthoc_tau{tau}/rel_pred_cv"]})
    ok = [r for r in rows if r["rel_pred_cv"] < target]
    return TauChoice(rows, max(ok, key=lambda r: r["top1"]) if ok else None)




FEW_PEOPLE = 2  # val people per name at or under which a person-level interval means little


def people_per_name(label: np.ndarray, split: np.ndarray, person: np.ndarray, names: list[str]
                    ) -> dict:
    """The design behind every person-level interval: per name, its people (identity clusters;
    an image without one is its own) and images in train, val and test (where there is one:
    test_people and test_images are then present); the names with a single
    train person; and a warning when most names present in val have at most FEW_PEOPLE val
    people (one person per name gives a zero-width interval) or when every name is a single
    person (the identity is the name's folder, not the person: data.group_by or
    data.group_pattern)."""
    counts, k = {}, len(names)
    for side in ("train", "val", "test") if (split == "test").any() else ("train", "val"):
        on = split == side
        pairs = {(int(lab), p) for lab, p in zip(label[on], person[on], strict=True)}
        counts[f"{side}_people"] = np.bincount([lab for lab, _ in pairs], minlength=k)[:k]
        counts[f"{side}_images"] = np.bincount(label[on], minlength=k)[:k]
    in_val = counts["val_images"] > 0
    few = int((in_val & (counts["val_people"] <= FEW_PEOPLE)).sum())
    single_train = np.flatnonzero((counts["train_images"] > 0) & (counts["train_people"] == 1))
    whole = {(int(lab), p) for lab, p in zip(label, person, strict=True)}
    every_name_one_person = len(whole) == len(np.unique(label))
    warnings_ = []
    if every_name_one_person and len(whole) > 1:
        warnings_.append("every name is a single person: the identity is the name's folder, "
                         "not the person, so every interval has zero width. Set "
                         "data.group_pattern (or data.group_by) to the person and rebuild the "
                         "manifest")
    elif in_val.any() and few > in_val.sum() / 2:
        warnings_.append(f"{few} of {int(in_val.sum())} names in val have at most {FEW_PEOPLE} "
                         "val people: their person-level intervals are near zero width or "
                         "decided by one or two people; read them as indicative only")
    return {**{key: v.tolist() for key, v in counts.items()},
            "few_val_people": few, "names_in_val": int(in_val.sum()),
            "single_train_person": [names[i] for i in single_train],
            "single_train_person_images": int(counts["train_images"][single_train].sum()),
            "train_images_total": int(counts["train_images"].sum()), "warnings": warnings_}
