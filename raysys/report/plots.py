"""The report's figures, one style: each function takes arrays and returns PNG bytes, so the
report writes them to a local folder or S3 alike."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on cluster heads or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from raysys.report.analysis import confusion_with_other  # noqa: E402

STYLE = {"figure.dpi": 110, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False}


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure(*args, **kwargs):
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def curves(history: list[dict], metric: str, best_epoch: int) -> bytes:
    """Train and val loss, train accuracy and val top-1 per epoch; the best epoch marked."""
    e = [h["epoch"] for h in history]
    fig, (loss, acc) = figure(1, 2, figsize=(10, 3.6))
    loss.plot(e, [h["train/loss"] for h in history], marker=".", label="train loss")
    loss.plot(e, [h["val/loss"] for h in history], marker=".", label="val loss")
    acc.plot(e, [h["train/acc"] for h in history], marker=".", label="train accuracy")
    acc.plot(e, [h["val/top1"] for h in history], marker=".", label="val top-1")
    acc.plot(e, [h["val/balanced_acc"] for h in history], marker=".", label="val balanced")
    acc.axhline(history[-1]["chance/uniform"], color="grey", ls=":", label="chance (1/K)")
    for ax in (loss, acc):
        ax.axvline(best_epoch, color="k", alpha=0.3, ls="--")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    loss.set_title("loss")
    acc.set_title(f"accuracy (dashed: best epoch by {metric})")
    return png(fig)


def f1_vs_count(table) -> bytes:
    """Per-name F1 against train images (log x); the extremes labelled."""
    t = table[table["support"] > 0]
    fig, ax = figure(figsize=(7, 4))
    ax.scatter(t["train_count"], t["f1"], s=12, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("train images (log)")
    ax.set_ylabel("F1 on val")
    marks = {*t.nlargest(3, "f1").index, *t.nsmallest(3, "f1").index,
             *t.nlargest(2, "train_count").index, *t.nsmallest(2, "train_count").index}
    for i in marks:
        ax.annotate(t.loc[i, "name"], (t.loc[i, "train_count"], t.loc[i, "f1"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_title("per-name F1 against training images")
    return png(fig)


def prediction_histogram(labels: np.ndarray, preds: np.ndarray, k: int) -> bytes:
    """Predicted against true val counts per name, names sorted by size (label order)."""
    x = np.arange(k)
    fig, ax = figure(figsize=(8, 3.6))
    ax.bar(x, np.bincount(labels, minlength=k), width=1.0, alpha=0.5, label="true val count")
    ax.step(x, np.bincount(preds, minlength=k), where="mid", color="C3", label="predicted")
    ax.set_xlabel("name (largest first)")
    ax.set_ylabel("val images")
    ax.set_title("prediction histogram against the true val distribution")
    ax.legend(fontsize=7)
    return png(fig)


def confusion_top(labels: np.ndarray, preds: np.ndarray, names: list[str], top: int = 20
                  ) -> bytes:
    """Row-normalised confusion among the `top` largest names (labels 0..top-1), with a last
    column for predictions of any other name: each row sums to 1 over all its predictions."""
    top = min(top, len(names))
    cm = confusion_with_other(labels, preds, top)
    fig, ax = figure(figsize=(6.8, 5.5))
    im = ax.imshow(cm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(top + 1), [*names[:top], "other"], rotation=90, fontsize=7)
    ax.set_yticks(range(top), names[:top], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.grid(False)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"confusion of the {top} largest names (rows sum to 1, other names included)")
    return png(fig)


def reliability(table: list[dict], ece_value: float) -> bytes:
    fig, ax = figure(figsize=(4.5, 4.5))
    centers = [(b["lo"] + b["hi"]) / 2 for b in table]
    acc = [b["accuracy"] for b in table]
    ax.bar(centers, np.nan_to_num(acc), width=1 / len(table), alpha=0.7, edgecolor="k",
           label="accuracy")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="perfect calibration")
    ax.set_xlabel("confidence (top class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram, ECE {ece_value:.3f} ({len(table)} bins)")
    ax.legend(fontsize=7)
    return png(fig)


def bands(rows: list[dict]) -> bytes:
    fig, ax = figure(figsize=(4.5, 3.2))
    ax.bar([f"{r['band']}\n{r['train images per name']}" for r in rows],
           [np.nan_to_num(r["accuracy"]) for r in rows], color=["C0", "C1", "C2"])
    ax.set_ylabel("mean per-name val accuracy")
    ax.set_title("accuracy by name frequency (train images)")
    return png(fig)


def sweep_curves(curves: list[tuple[str, list[int], list[float], str]], metric: str) -> bytes:
    """One val curve per trial (label, epochs, values, status); x marks a trial that ended
    before max_t (ASHA's stop, divergence or a failure)."""
    fig, ax = figure(figsize=(8, 5))
    for label, epochs, values, status in curves:
        (line,) = ax.plot(epochs, values, marker=".", label=label)
        if status != "finished":
            ax.plot(epochs[-1], values[-1], marker="x", markersize=12, color=line.get_color())
            ax.annotate(status.split()[0], (epochs[-1], values[-1]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("val curves per trial (x = stopped by ASHA, diverged or failed)")
    ax.legend(fontsize=7)
    return png(fig)


def tau_tradeoff(rows: list[dict], target: float) -> bytes:
    fig, ax = figure(figsize=(5.5, 3.6))
    tau = [r["tau"] for r in rows]
    ax.plot(tau, [r["top1"] for r in rows], marker="o", label="top-1")
    ax.plot(tau, [r["balanced_acc"] for r in rows], marker="o", label="balanced accuracy")
    ax2 = ax.twinx()
    ax2.plot(tau, [r["rel_pred_cv"] for r in rows], marker="s", color="C3",
             label="relative prediction CV")
    ax2.axhline(target, color="C3", ls=":", alpha=0.6)
    ax.set_xlabel("post-hoc tau (logits - tau log prior)")
    ax.set_ylabel("accuracy")
    ax2.set_ylabel("relative prediction CV")
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    ax.set_title("skew control: accuracy against prediction skew")
    return png(fig)


def embeddings_pca(emb: np.ndarray, labels: np.ndarray, names: list[str], top: int = 10
                   ) -> bytes:
    """2-D PCA of the val embeddings, the `top` largest names coloured, the rest grey."""
    xy = PCA(2, random_state=0).fit_transform(emb) if len(emb) > 2 else np.zeros((len(emb), 2))
    fig, ax = figure(figsize=(6, 5))
    rest = labels >= top
    ax.scatter(xy[rest, 0], xy[rest, 1], s=4, color="lightgrey", label="other names")
    for c in range(min(top, len(names))):
        m = labels == c
        ax.scatter(xy[m, 0], xy[m, 1], s=8, label=names[c])
    ax.legend(fontsize=6, markerscale=2)
    ax.set_title(f"val embeddings, PCA, the {min(top, len(names))} largest names")
    return png(fig)


def contact_sheet(images: list[np.ndarray], heat: list[np.ndarray], titles: list[str]
                  ) -> bytes:
    """Images (H, W, 3 uint8) with their attention-rollout heat maps overlaid."""
    cols = min(6, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = figure(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, h, title in zip(axes.ravel(), images, heat, titles, strict=False):
        ax.imshow(img)
        ax.imshow(h, cmap="jet", alpha=0.45, extent=(0, img.shape[1], img.shape[0], 0))
        ax.set_title(title, fontsize=7)
    return png(fig)
