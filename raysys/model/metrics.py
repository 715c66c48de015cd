"""Validation metrics: accuracy, balance, chance baselines, post-hoc logit adjustment and the
per-name table. Every number is computed over the classes present in val where absent classes
would be scored as failures they are not (macro-F1, relative prediction CV).

Three prediction CVs, because "CV < 0.30" only means something for the right one:
- `pred_cv` (the seed's): std/mean of predicted counts over all K names. On the natural,
  imbalanced val set a perfect classifier scores the true-count CV (0.30 at 30 names, 0.96 at
  500), so the seed's target cannot be met by it.
- `true_cv`: the same for the true counts, the floor `pred_cv` is read against.
- `rel_pred_cv`: std/mean of predicted/true counts over the names present in val; 0 for a
  perfect classifier, large when predictions pile onto a few names. The criteria judge this one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

POST_HOC_TAUS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def cv(counts: np.ndarray) -> float:
    """std/mean: 0 when every entry is equal."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(counts.std() / counts.mean()) if len(counts) and counts.mean() > 0 else \
        float("nan")


def relative_pred_cv(labels: np.ndarray, preds: np.ndarray, k: int) -> float:
    """CV of predicted/true counts over the names present in val: 0 for a perfect classifier."""
    true = np.bincount(labels, minlength=k)
    present = true > 0
    return cv(np.bincount(preds, minlength=k)[present] / true[present])


@torch.no_grad()
def predictions(logits: torch.Tensor, log_prior: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each worker keeps per val image, from fp32 logits: the top-5 classes, and the argmax
    after subtracting tau log(prior) for each post-hoc tau (Menon et al. 2021). pred_tau0.0 is
    the plain argmax: top-1 and predictions.npy both come from it."""
    logits = logits.float()
    k = min(5, logits.shape[1])
    out = {"top5": logits.topk(k, dim=1).indices}
    for tau in POST_HOC_TAUS:
        out[f"pred_tau{tau}"] = (logits - tau * log_prior).argmax(dim=1)
    return out


def chance_baselines(train_counts: np.ndarray, val_labels: np.ndarray) -> dict[str, float]:
    k = len(train_counts)
    p = train_counts / train_counts.sum()
    q = np.bincount(val_labels, minlength=k) / max(len(val_labels), 1)
    present = int((q > 0).sum())
    return {
        "chance/majority": float(q[int(np.argmax(p))]),  # always the largest train class
        "chance/prior_match": float(np.dot(p, q)),  # guess at random by the train prior
        "chance/uniform": 1.0 / k,  # a uniform guess, in top-1 and in balanced accuracy
        # Any constant guess in balanced accuracy: recall 1 on one name, 0 on the others
        # present. Balanced accuracy averages over the names in val only, so this is
        # 1/(names in val), above 1/K when some names have no val image.
        "chance/balanced_constant": 1.0 / present if present else float("nan"),
    }


def val_metrics(labels: np.ndarray, top5: np.ndarray, preds_by_tau: dict[str, np.ndarray],
                train_counts: np.ndarray) -> dict[str, float]:
    k = len(train_counts)
    present = np.unique(labels)
    with warnings.catch_warnings():
        # A class predicted but absent from val is normal on small val sets.
        warnings.simplefilter("ignore", UserWarning)
        preds = preds_by_tau["pred_tau0.0"]
        m = {
            "val/top1": float((preds == labels).mean()),
            "val/top5": float((top5 == labels[:, None]).any(axis=1).mean()),
            "val/balanced_acc": float(balanced_accuracy_score(labels, preds)),
            "val/macro_f1": float(f1_score(labels, preds, labels=present, average="macro",
                                           zero_division=0)),
            "val/pred_cv": cv(np.bincount(preds, minlength=k)),
            "val/true_cv": cv(np.bincount(labels, minlength=k)),
            "val/rel_pred_cv": relative_pred_cv(labels, preds, k),
            "val/names_present": int(len(present)),
            "val/images": int(len(labels)),
        }
        for tau in POST_HOC_TAUS[1:]:
            p = preds_by_tau[f"pred_tau{tau}"]
            m[f"posthoc_tau{tau}/top1"] = float((p == labels).mean())
            m[f"posthoc_tau{tau}/balanced_acc"] = float(balanced_accuracy_score(labels, p))
            m[f"posthoc_tau{tau}/rel_pred_cv"] = relative_pred_cv(labels, p, k)
    return m | chance_baselines(train_counts, labels)


def per_class_table(labels: np.ndarray, preds: np.ndarray, names: list[str],
                    train_counts: np.ndarray) -> pd.DataFrame:
    """results.csv: one row per name; `support` 0 marks names with no val images."""
    k = len(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        p, r, f, s = precision_recall_fscore_support(labels, preds, labels=range(k),
                                                     zero_division=0)
    return pd.DataFrame({"name": names, "precision": p, "recall": r, "f1": f, "support": s,
                         "train_count": np.asarray(train_counts).astype(int),
                         "predicted": np.bincount(preds, minlength=k)})


def accuracy_spread(table: pd.DataFrame) -> dict[str, float]:
    """Per-class accuracy (= recall) over classes present in val: min, quartiles, max."""
    recall = table.loc[table["support"] > 0, "recall"].to_numpy()
    q = np.quantile(recall, [0, 0.25, 0.5, 0.75, 1]) if len(recall) else [np.nan] * 5
    return dict(zip(("min", "q25", "median", "q75", "max"), map(float, q), strict=True))
