"""The sweep report: trials.csv (one row per trial), summary.md (the seed's success criteria,
the winner, links to each trial's run summary) and curves.png (every val curve, with ASHA's
stops marked). Built from the trials' own training logs, which survive an early stop."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster heads or CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from raysys.report import best_entry  # noqa: E402

STATUSES = ("completed", "stopped early (ASHA)", "diverged", "error")


def trial_rows(result_grid, out_dir: Path, max_t: int, metric: str) -> list[dict]:
    rows = []
    for result in result_grid:
        trial_id = Path(result.path).name
        run_dir = out_dir / "runs" / trial_id
        log = run_dir / "training_log.json"
        history = json.loads(log.read_text()) if log.exists() else []
        cfg = json.loads((run_dir / "config.json").read_text()) if (
            run_dir / "config.json").exists() else {}
        row = {"trial_id": trial_id, **{f"param:{k}": v for k, v in result.config.items()}}
        if result.error is not None or not history:
            status = "error"
        elif history[-1].get("diverged"):
            status = "diverged"
        elif history[-1]["epoch"] >= max_t:
            status = "completed"
        else:
            status = "stopped early (ASHA)"
        row["status"] = status
        row["error"] = str(result.error).splitlines()[0][:200] if result.error else ""
        row["epochs"] = history[-1]["epoch"] if history else 0
        if history:
            best = best_entry(history, metric)
            run = cfg.get("run", {})
            gpus = run.get("workers", 1) if run.get("gpus") else 0
            hours = sum(h["time/epoch_s"] for h in history) / 3600
            row |= {"best_val_top1": best["val/top1"], "best_epoch": best["epoch"],
                    "balanced_acc": best["val/balanced_acc"], "pred_cv": best["val/pred_cv"],
                    "num_classes": round(1 / best["chance/uniform"]),
                    "top_k": cfg.get("data", {}).get("top_k", 0),
                    "chance_uniform": best["chance/uniform"],
                    "img_per_s": sum(h["train/img_per_s"] for h in history) / len(history),
                    "gpu_hours": hours * gpus, metric: best[metric]}
        row["run_summary"] = str(run_dir / "summary.md")
        rows.append(row)
    return rows


def params_label(row: dict) -> str:
    """'loss.label_smoothing=0.1, ...' from a trials.csv row's param: columns."""
    return ", ".join(f"{k[6:]}={v}" for k, v in row.items() if k.startswith("param:"))


def criteria_table(df: pd.DataFrame, metric: str) -> list[str]:
    """The seed's targets, each against the trials it applies to, with chance beside it."""
    ok = df[df["status"] != "error"].dropna(subset=["best_val_top1"])
    lines = ["| criterion | result | chance | met |", "|---|---|---|---|"]

    def row(name, value, chance, met):
        mark = "n/a" if met is None else ("✓" if met else "✗")
        lines.append(f"| {name} | {value} | {chance} | {mark} |")

    for label, threshold, pick in (
        ("top-1 > 5% on all names (500 in production)", 0.05, ok[ok["top_k"] == 0]),
        ("top-1 > 15% on 30 names (≤ 30 names)", 0.15, ok[ok["num_classes"] <= 30]),
    ):
        if pick.empty:
            row(label, "no trial", "-", None)
            continue
        b = pick.loc[pick["best_val_top1"].idxmax()]
        row(label, f"{b['best_val_top1']:.4f} ({int(b['num_classes'])} names, trial "
            f"{b['trial_id']})", f"{b['chance_uniform']:.4f}", b["best_val_top1"] > threshold)
    if not ok.empty:
        w = ok.loc[ok[metric].idxmax()]
        row("prediction CV < 0.30 (winner)", f"{w['pred_cv']:.3f}", "-", w["pred_cv"] < 0.30)
    diverged = int((df["status"] == "diverged").sum())
    row("no divergence", f"{diverged} of {len(df)} trials diverged", "-", diverged == 0)
    return lines


def plot_curves(rows: list[dict], out_dir: Path, metric: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        log = out_dir / "runs" / r["trial_id"] / "training_log.json"
        if not log.exists():
            continue
        h = json.loads(log.read_text())
        epochs, values = [e["epoch"] for e in h], [e[metric] for e in h]
        (line,) = ax.plot(epochs, values, marker=".", label=f"{r['trial_id']} {params_label(r)}")
        if r["status"] != "completed":
            ax.plot(epochs[-1], values[-1], marker="x", markersize=12, color=line.get_color())
            ax.annotate(r["status"].split()[0], (epochs[-1], values[-1]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("val curves (x = stopped by ASHA, diverged or failed)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    path = out_dir / "curves.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(spec, result_grid, out_dir: Path, *, metric: str, max_t: int) -> Path:
    rows = trial_rows(result_grid, out_dir, max_t, metric)
    df = pd.DataFrame(rows)
    df.to_csv(out_dir / "trials.csv", index=False)
    plot_curves(rows, out_dir, metric)
    ok = df[df["status"] != "error"].dropna(subset=[metric]) if metric in df else df.iloc[:0]
    lines = [f"# Sweep {spec.name}: experiment {spec.experiment}", "",
             f"{len(df)} trials, metric `{metric}`, ASHA max_t {max_t} epochs. Status: " +
             ", ".join(f"{s} {int((df['status'] == s).sum())}" for s in STATUSES), "",
             "## Success criteria", "", *criteria_table(df, metric), ""]
    if not ok.empty:
        w = ok.loc[ok[metric].idxmax()]
        params = {k[6:]: w[k] for k in df.columns if k.startswith("param:")}
        lines += ["## Winner", "", f"Trial `{w['trial_id']}`: {metric} {w[metric]:.4f} at epoch "
                  f"{int(w['best_epoch'])}, balanced accuracy {w['balanced_acc']:.4f}, "
                  f"prediction CV {w['pred_cv']:.3f}.", "",
                  "```json", json.dumps(params, indent=1, default=str), "```", ""]
    lines += ["## Trials", "", "| trial | params | status | epochs | best top-1 | balanced | "
              "pred CV | img/s | run summary |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        link = Path(r["run_summary"]).relative_to(out_dir)
        lines.append(f"| {r['trial_id']} | {params_label(r)} | {r['status']} | {r['epochs']} | "
                     f"{r.get('best_val_top1', float('nan')):.4f} | "
                     f"{r.get('balanced_acc', float('nan')):.4f} | "
                     f"{r.get('pred_cv', float('nan')):.3f} | {r.get('img_per_s', 0):.0f} | "
                     f"[summary]({link}) |")
    lines += ["", "![val curves](curves.png)", ""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path
