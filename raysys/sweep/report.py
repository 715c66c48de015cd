"""The sweep report: trials.csv (one row per trial), summary.md (the seed's success criteria,
each where it is defined, the winner, links to every trial's run summary) and curves.png
(every val curve, with ASHA's stops marked). Built from the trials' own training logs and
configs, read through storage, which survive an early stop."""

from __future__ import annotations

import json

import pandas as pd

from raysys import storage
from raysys.config import Config
from raysys.report import plots
from raysys.report.build import build_report, inference_json
from raysys.report.history import STATUSES, best_entry, read_history, run_status
from raysys.report.intervals import Interval
from raysys.report.summary import CV_NOTE, REL_CV_TARGET, TARGETS, criteria_table
from raysys.sweep.selection import sweep_inference


def trial_rows(results, sweep_dir: str, max_t: int, metric: str) -> tuple[list[dict], dict]:
    """One row per trial, and each trial's history by id (for the curves)."""
    rows, histories = [], {}
    for result in results:
        trial_id = storage.basename(result.path)
        run_dir = storage.join(sweep_dir, "runs", trial_id)
        history = read_history(run_dir) if storage.exists(
            storage.join(run_dir, "training_log.json")) else []
        histories[trial_id] = history
        row = {"trial_id": trial_id, **{f"param:{k}": v for k, v in result.config.items()},
               "status": run_status(history, max_t, error=result.error),
               "error": str(result.error).splitlines()[0][:200] if result.error else "",
               "epochs": history[-1]["epoch"] if history else 0,
               "run_summary": storage.join(run_dir, "summary.md")}
        if history:
            cfg = Config.from_dict(storage.read_json(storage.join(run_dir, "config.json")))
            best = best_entry(history, metric)
            hours = sum(h["time/epoch_s"] for h in history) / 3600
            row |= {"best_epoch": best["epoch"], "best_val_top1": best["val/top1"],
                    "balanced_acc": best["val/balanced_acc"],
                    "rel_pred_cv": best["val/rel_pred_cv"], "pred_cv": best["val/pred_cv"],
                    "true_cv": best["val/true_cv"], "num_classes": best["data/num_classes"],
                    "chance_uniform": best["chance/uniform"],
                    "chance_best_guess": max(best["chance/majority"],
                                             best["chance/prior_match"]),
                    "floor_pixel_balanced": _own_floor(run_dir),
                    **_from_run_report(run_dir),
                    "img_per_s": sum(h["train/img_per_s"] for h in history) / len(history),
                    "gpu_hours": hours * (cfg.run.workers if cfg.run.gpus else 0),
                    metric: best[metric]}
        rows.append(row)
    return rows, histories


def _own_floor(run_dir: str) -> float:
    """The pixel-linear floor's balanced accuracy at the trial's own names, as its run report
    computed it (NaN before that report exists)."""
    path = storage.join(run_dir, "floors.json")
    return storage.read_json(path)["pixel_linear"]["balanced_acc"] if storage.exists(path) \
        else float("nan")


def _from_run_report(run_dir: str) -> dict:
    """From the trial's run report (inference.json; nothing before it exists): its
    selection-free balanced accuracy and its paired difference from the pixel floor (estimate,
    lo, hi, Monte Carlo SE), the permutation tests' p-values (any name signal; beyond gender),
    the within-gender accuracy at the selected epoch, and the primary endpoint on test."""
    path = storage.join(run_dir, "inference.json")
    if not storage.exists(path):
        return {}
    d = storage.read_json(path)
    if "error" in d:
        return {}
    out = {"demographics_source": d["demographics"]["source"]}
    primary = (d.get("test") or {}).get("primary", {})
    picks = {"pixel_diff": d.get("vs", {}).get("pixel-linear floor", {}).get("balanced_acc"),
             "free_top1": d.get("selection_free", {}).get("top1"),
             "free_balanced": d.get("selection_free", {}).get("balanced_acc"),
             "test_primary": primary.get("difference")}
    for key, iv in picks.items():
        if iv:
            out |= {key: iv["estimate"], f"{key}_lo": iv["lo"], f"{key}_hi": iv["hi"],
                    f"{key}_mc": iv.get("mc_se", 0.0)}
    if d.get("signal"):
        out |= {"signal_p": d["signal"]["p"], "signal_shown": d["signal"]["shown"]}
    if "beyond" in primary:
        out |= {"test_primary_p": primary["beyond"]["p"],
                "test_primary_shown": primary["beyond"]["shown"],
                "test_person_disjoint": d["test"].get("person_disjoint", True)}
    gender = d.get("gender", {})
    if gender:
        out["gender_floor_balanced"] = gender["floor"]["balanced_acc"]
        out["within_gender"] = gender.get("within", {}).get("balanced_acc", float("nan"))
        if gender.get("beyond"):
            out |= {"beyond_gender_p": gender["beyond"]["p"],
                    "beyond_gender_shown": gender["beyond"]["shown"]}
    return out


def interval_text(w: pd.Series | dict, key: str) -> str:
    value = w.get(key, float("nan"))
    if value != value:
        return "n/a"
    return f"{value:.4f} [{w[f'{key}_lo']:.4f}, {w[f'{key}_hi']:.4f}]"


def best_per_k(ok: pd.DataFrame, metric: str) -> list[tuple[int, pd.Series]]:
    """The best trial for each number of names. Trials over different name sets (experiment
    2.4) are never ranked against each other: chance, floors and difficulty all change with K."""
    return [(int(k), g.loc[g[metric].idxmax()]) for k, g in ok.groupby("num_classes")]


def params_label(row: dict) -> str:
    """'loss.label_smoothing=0.1, ...' from a trials.csv row's param: columns."""
    return ", ".join(f"{k[6:]}={v}" for k, v in row.items() if k.startswith("param:"))


def sweep_criteria(df: pd.DataFrame, metric: str, floors: dict | None = None,
                   sweep_level: dict | None = None) -> list[tuple]:
    """The seed's targets over the trials each applies to; n/a with the reason elsewhere.
    Where one trial ran at a number of names, its own selection-free verdicts are the sweep's;
    where several competed on the same val, the sweep-level ones (`sweep_level`, by number of
    names, from selection.py: trial and epoch chosen together inside), or none."""
    ok = df[df["status"] != "error"].dropna(subset=["best_val_top1"]) \
        if "best_val_top1" in df else df.iloc[:0]
    level = sweep_level or {}
    rows = []
    for label, k, threshold in TARGETS:
        pick = ok[ok["num_classes"] == k] if not ok.empty else ok
        if pick.empty:
            have = sorted({int(x) for x in ok["num_classes"]}) if not ok.empty else []
            rows.append((label, f"n/a: no trial with {k} names (trials have {have})", "-", None))
            continue
        b = pick.loc[pick["best_val_top1"].idxmax()]
        free, claim = _free(b, "free_top1", level.get(k, {}).get("top1"), len(pick))
        rows.append((label, f"selected {b['best_val_top1']:.4f} (trial {b['trial_id']}); "
                     f"selection-free {free}", f"{threshold:g}", claim(threshold)))
    winners = best_per_k(ok, metric) if not ok.empty else []
    for k, w in winners:
        n, at = int((ok["num_classes"] == k).sum()), level.get(k, {})
        who = "winner" if len(winners) == 1 else f"best at {k} names:"
        whose = "winner's" if len(winners) == 1 else who
        free, claim = _free(w, "free_top1", at.get("top1"), n)
        rows.append((f"{who} beats the best chance guess",
                     f"selection-free top-1 {free}; winner trial {w['trial_id']}",
                     f"{w['chance_best_guess']:.4f}", claim(w["chance_best_guess"])))
        if n == 1:
            p = w.get("signal_p", float("nan"))
            signal = (p, bool(w["signal_shown"])) if p == p else (p, None)
        else:
            test = at.get("signal")
            signal = (test["p"], test["shown"]) if test else (float("nan"), None)
        rows.append((f"{whose} balanced accuracy beats chance (any name signal)",
                     f"permutation p = {signal[0]:.4f}" + (f" (trial {w['trial_id']})" if n == 1
                                                           else f" (best of {n} trials)")
                     if signal[0] == signal[0] else "n/a",
                     "names dealt at random to val's people", signal[1]))
        free, claim = _free(w, "pixel_diff", at.get("pixel_diff"), n)
        rows.append((f"{whose} balanced accuracy beats the pixel-linear floor",
                     f"difference {free} (selection-free, paired)",
                     f"{w.get('floor_pixel_balanced', float('nan')):.4f} at {k} names",
                     claim(0.0)))
        rows.append((f"{whose} relative prediction CV < {REL_CV_TARGET}",
                     f"{w['rel_pred_cv']:.3f} (seed's CV {w['pred_cv']:.3f}, "
                     f"true {w['true_cv']:.3f})",
                     "0 = predicted counts match true counts",
                     bool(w["rel_pred_cv"] < REL_CV_TARGET)))
    diverged = int((df["status"] == "diverged").sum())
    rows.append(("no divergence", f"{diverged} of {len(df)} trials diverged", "-", diverged == 0))
    return rows


def _free(w: pd.Series | dict, key: str, sweep: Interval | None, trials: int):
    """(the selection-free interval as text, whether its lower bound clears a reference by
    twice its Monte Carlo SE): the trial's own where it ran alone, else the sweep-level one
    (trial chosen inside), else undecided."""
    if trials == 1:
        lo = w.get(f"{key}_lo", float("nan"))
        if lo != lo:
            return "n/a", lambda ref: None
        return (interval_text(w, key),
                lambda ref: bool(lo - ref > 2 * w.get(f"{key}_mc", 0.0)))
    if sweep is None:
        return (f"n/a with {trials} trials (no sweep-level estimate)", lambda ref: None)
    return (f"{sweep} (best of {trials} trials, chosen inside)",
            lambda ref: bool(sweep.lo - ref > 2 * sweep.mc_se))


def sweep_level_lines(level: dict) -> list[str]:
    """The sweep-level estimates per number of names with several trials."""
    if not level:
        return []
    lines = ["## Sweep level: trial and epoch chosen together", "",
             "Each trial's own selection-free figures redo only its epoch choice; the winner was "
             "also chosen among the trials on the same val. Here every (trial, epoch) is one "
             "candidate: each half of val's people is scored by the candidate best on the "
             "other half (mean over the halvings, every choice redone in each resample), and "
             "the permutation tests take the best candidate.", "",
             "| names | trials | candidates | draws | selection-free top-1 | balanced | "
             "- pixel floor (paired) | any name signal: p | beyond gender: p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, d in sorted(level.items()):
        sig, bg = d.get("signal"), d.get("beyond_gender")
        lines.append(f"| {k} | {d['trials']} | {d['candidates']} | {d['draws']:,} | "
                     f"{d.get('top1', 'n/a')} | {d.get('balanced_acc', 'n/a')} | "
                     f"{d.get('pixel_diff', 'n/a')} | "
                     + (f"{sig['p']:.4f}" if sig else "n/a") + " | "
                     + (f"{bg['p']:.4f} ({'shown' if bg['shown'] else 'none shown'})"
                        if bg else "n/a") + " |")
    return lines + [""]


def plot_curves(rows: list[dict], histories: dict, metric: str) -> bytes:
    return plots.sweep_curves([(f"{r['trial_id']} {params_label(r)}",
                                [e["epoch"] for e in histories[r["trial_id"]]],
                                [e[metric] for e in histories[r["trial_id"]]], r["status"])
                               for r in rows if histories.get(r["trial_id"])], metric)


def render(exp, df: pd.DataFrame, rows: list[dict], metric: str, max_t: int, floors: dict,
           sweep_level: dict | None = None) -> str:
    ok = df[df["status"] != "error"].dropna(subset=[metric]) if metric in df else df.iloc[:0]
    px, meta = floors["pixel_linear"], floors["metadata_probe"]
    lines = [f"# Sweep {exp.name}: {exp.title}", "",
             f"{len(df)} trials, metric `{metric}`, ASHA max_t {max_t} epochs. Status "
             "(\"stopped early\": by ASHA): " +
             ", ".join(f"{s} {int((df['status'] == s).sum())}" for s in STATUSES
                       if s != "running"), "",
             "## Success criteria", "",
             *criteria_table(sweep_criteria(df, metric, floors, sweep_level)), "",
             CV_NOTE, "", "## Chance and the floors (val, all names of the base config)", "",
             "| reference | top-1 | balanced accuracy |", "|---|---|---|",
             f"| chance: uniform (1/K) | {floors['chance']['uniform']:.4f} | "
             f"{floors['chance']['uniform']:.4f} |",
             f"| pixel-linear floor ({floors['features']['pixels']}) | {px['top1']:.4f} | "
             f"{px['balanced_acc']:.4f} |",
             f"| metadata probe (no face) | {meta['top1']:.4f} | {meta['balanced_acc']:.4f} |",
             ""]
    winners = best_per_k(ok, metric) if not ok.empty else []
    if len(winners) > 1:
        lines += ["## Best trial at each number of names", "",
                  "No overall winner: trials over different numbers of names are not ranked "
                  "against each other (chance, floors and difficulty all change with K). Each "
                  "is read against the chance and the floor of its own names.", "",
                  "| names | trial | top-1 | chance (1/K) | balanced | pixel-linear floor "
                  "(balanced) |", "|---|---|---|---|---|---|"]
        lines += [f"| {k} | `{w['trial_id']}` | {w['best_val_top1']:.4f} | "
                  f"{w['chance_uniform']:.4f} | {w['balanced_acc']:.4f} | "
                  f"{w.get('floor_pixel_balanced', float('nan')):.4f} |" for k, w in winners]
        lines.append("")
    lines += sweep_level_lines(sweep_level or {})
    lines += beyond_lines(winners)
    if len(winners) == 1:
        (_, w), = winners
        params = {k[6:]: w[k] for k in df.columns if k.startswith("param:")}
        lines += ["## Winner", "", f"Trial `{w['trial_id']}`: {metric} {w[metric]:.4f} at epoch "
                  f"{int(w['best_epoch'])}, balanced accuracy {w['balanced_acc']:.4f}, "
                  f"relative prediction CV {w['rel_pred_cv']:.3f}.", "",
                  "```json", json.dumps(params, indent=1, default=str), "```", ""]
    lines += ["## Trials", "", "| trial | params | status | epochs | best top-1 | balanced | "
              "rel. pred CV | img/s | run summary |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['trial_id']} | {params_label(r)} | {r['status']} | {r['epochs']} | "
                     f"{r.get('best_val_top1', float('nan')):.4f} | "
                     f"{r.get('balanced_acc', float('nan')):.4f} | "
                     f"{r.get('rel_pred_cv', float('nan')):.3f} | {r.get('img_per_s', 0):.0f} | "
                     f"[summary](runs/{r['trial_id']}/summary.md) |")
    lines += ["", "![val curves](curves.png)", ""]
    return "\n".join(lines)


def beyond_lines(winners: list[tuple[int, pd.Series]]) -> list[str]:
    """The best trial at each K, read against gender: its own permutation test."""
    sources = [w.get("demographics_source") for _, w in winners
               if isinstance(w.get("demographics_source"), str)]
    if not sources:
        return ["## Beyond gender and generation", "",
                "No trial report with demographic controls yet (`raysys report` on a trial's "
                "run folder writes them).", ""]
    lines = ["## Beyond gender and generation", "",
             f"Source: {sources[0]}. Each trial's summary has the gender x generation controls "
             "and the error analysis. The p-value is the trial's own permutation test (names "
             "dealt at random among the people of each gender, its epoch choice inside); the "
             "choice of this trial among the others is not inside it, so with several trials "
             "it is that trial's claim, not the sweep's. The last column is the primary "
             "endpoint: the chosen trial's chosen model scored once on the held-out test split "
             "(within-gender balanced accuracy - gender floor, paired 95%, and its permutation "
             "p); neither the trial nor the epoch was chosen on test, so it is the sweep's "
             "claim.", "",
             "| names | trial | balanced, selected on val | selection-free | within gender "
             "(selected epoch) | gender floor | name signal beyond gender: p | primary "
             "endpoint, on test |", "|---|---|---|---|---|---|---|---|"]
    for k, w in winners:
        p = w.get("beyond_gender_p", float("nan"))
        lines.append(f"| {k} | `{w['trial_id']}` | {w['balanced_acc']:.4f} | "
                     f"{interval_text(w, 'free_balanced')} | "
                     f"{w.get('within_gender', float('nan')):.4f} | "
                     f"{w.get('gender_floor_balanced', float('nan')):.4f} | "
                     + (f"{p:.4f} ({'shown' if w['beyond_gender_shown'] else 'none shown'})"
                        if p == p else "n/a") + " | " + test_text(w) + " |")
    return lines + [""]


def test_text(w: pd.Series | dict) -> str:
    """The primary endpoint on test with its verdict, or why there is none."""
    if w.get("test_primary", float("nan")) != w.get("test_primary", float("nan")):
        return "no test split"
    iv = Interval(w["test_primary"], w["test_primary_lo"], w["test_primary_hi"],
                  w["test_primary_mc"])
    if not w.get("test_person_disjoint", True):  # person recognition would count
        return (f"{iv}, p = {w['test_primary_p']:.4f}: no verdict (test shares people with "
                "train: split by image)")
    return (f"{iv} **{iv.verdict()}** the floor; p = {w['test_primary_p']:.4f} "
            f"({'shown' if w['test_primary_shown'] else 'not shown'})")


def write_report(exp, results, sweep_dir: str, *, metric: str, max_t: int, floors: dict
                 ) -> str:
    """Every trial's full run report (ASHA-stopped ones included), then the sweep's."""
    for result in results:
        run_dir = storage.join(sweep_dir, "runs", storage.basename(result.path))
        if storage.exists(storage.join(run_dir, "best_model.pth")):
            build_report(run_dir)
    rows, histories = trial_rows(results, sweep_dir, max_t, metric)
    df = pd.DataFrame(rows)
    level = {}
    for k, group in df[df["status"] != "error"].groupby("num_classes") if "num_classes" in df \
            else []:
        got = sweep_inference([storage.join(sweep_dir, "runs", t) for t in group["trial_id"]],
                              metric)
        if got is not None:
            level[int(k)] = got
    storage.write_json(storage.join(sweep_dir, "inference.json"),
                       {str(k): inference_json({"inference": v}) for k, v in level.items()})
    storage.write_text(storage.join(sweep_dir, "trials.csv"), df.to_csv(index=False))
    storage.write_bytes(storage.join(sweep_dir, "curves.png"),
                        plot_curves(rows, histories, metric))
    path = storage.join(sweep_dir, "summary.md")
    storage.write_text(path, render(exp, df, rows, metric, max_t, floors, level))
    return path
