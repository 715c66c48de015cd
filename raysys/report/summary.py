"""summary.md of a run: its status, best epoch and numbers read against chance, the seed's
success criteria (each where it is defined), per-name extremes and the curves. The training
loop writes the live version every epoch; `raysys report` (build.py) rewrites it with the
floors, the analyses and the figures (`extras`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysys.model.metrics import accuracy_spread
from raysys.report.analysis import TauChoice, tau_tradeoff
from raysys.report.history import best_entry
from raysys.report.intervals import Interval

# --- the seed's success criteria, each where it is defined ------------------------------------

TARGETS = (
    # (criterion, names K it is defined for, top-1 threshold)
    ("top-1 > 5% on 500 names", 500, 0.05),
    ("top-1 > 15% on 30 names", 30, 0.15),
)
REL_CV_TARGET = 0.30


def balanced_chance(best: dict) -> float:
    """What a constant guess scores in balanced accuracy: 1/(names in val). Logs written
    before this key existed fall back to 1/K."""
    return best.get("chance/balanced_constant", best["chance/uniform"])


def criteria_rows(k: int, best: dict, diverged: bool, where: str = "",
                  inf: dict | None = None) -> list[tuple]:
    """(criterion, result, reference, met: True/False/None = not decided). `where` names the
    trial. A claim of signal is never read at the selected epoch: `inf` (the report's
    inference) supplies the selection-free intervals, the pixel floor's paired one and the
    permutation test; without them (the live summary) the claims wait for `raysys report`."""
    inf = inf or {}
    free, signal = inf.get("selection_free"), inf.get("signal")
    pixel = inf.get("vs", {}).get("pixel-linear floor", {}).get("balanced_acc")
    at = f" ({where})" if where else ""
    pending = "not decided: read selection-free by `raysys report`"
    rows = []

    def above(iv: Interval, ref: float) -> bool:
        return iv.lo - ref > 2 * iv.mc_se

    for label, names, threshold in TARGETS:
        if k != names:
            rows.append((label, f"n/a: defined for {names} names; this run has {k}", "-", None))
        else:
            rows.append((label, f"selected {best['val/top1']:.4f}{at}; selection-free "
                         f"{free['top1']}" if free else f"{best['val/top1']:.4f}{at}; {pending}",
                         f"{threshold:g} (the selection-free lower bound must clear it)",
                         above(free["top1"], threshold) if free else None))
    floor = max(best["chance/majority"], best["chance/prior_match"])
    rows.append(("top-1 beats the best chance guess",
                 f"selection-free {free['top1']}" if free else pending,
                 f"majority {best['chance/majority']:.4f}, prior {best['chance/prior_match']:.4f}",
                 above(free["top1"], floor) if free else None))
    chance = balanced_chance(best)
    rows.append(("balanced accuracy beats chance (any name signal)",
                 f"permutation p = {signal['p']:.4f} (best of {signal['epochs']} epochs, "
                 f"{signal['permutations']:,} dealings of names to people)" if signal else pending,
                 f"a constant guess, 1/(names in val) = {chance:.4f}",
                 signal["shown"] if signal else None))
    rows.append(("balanced accuracy beats the pixel-linear floor",
                 f"difference {pixel} (selection-free, paired 95%)" if pixel else pending,
                 "the pixel floor on the same images", pixel.verdict() == "above"
                 if pixel else None))
    primary = (inf.get("test") or {}).get("primary", {})
    if "difference" in primary:
        d = primary["difference"]
        disjoint = inf["test"].get("person_disjoint", True)
        rows.append(("name signal beyond gender (the primary endpoint, on test)",
                     f"{d} (paired 95%); permutation p = {primary['beyond']['p']:.4f}"
                     + ("" if disjoint else "; test shares people with train (split by "
                        "image): person recognition counts"),
                     "the gender floor on test", d.verdict() == "above" if disjoint else None))
    rows.append((f"relative prediction CV < {REL_CV_TARGET}",
                 f"{best['val/rel_pred_cv']:.3f}{at}", "0 = predicted counts match true counts",
                 best["val/rel_pred_cv"] < REL_CV_TARGET))
    rows.append(("no divergence", "diverged" if diverged else "finite throughout", "-",
                 not diverged))
    return rows


def criteria_table(rows: list[tuple]) -> list[str]:
    lines = ["| criterion | result | reference | met |", "|---|---|---|---|"]
    for name, result, ref, met in rows:
        mark = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {result} | {ref} | {mark} |")
    return lines


CV_NOTE = ("Prediction CV is judged on the *relative* CV: std/mean of predicted/true counts "
           "over the names present in val, 0 for a perfect classifier. The seed's CV of "
           "predicted counts is shown beside the CV of the true counts, its floor on an "
           "imbalanced val set (a perfect classifier scores the true-count CV, not 0).")


# --- summary.md -------------------------------------------------------------------------------

def render_summary(history: list[dict], table: pd.DataFrame | None, info: dict,
                   extras: dict | None = None) -> str:
    """summary.md. The training loop writes it every epoch without `extras`; `raysys report`
    (build.py) rewrites it with the floors, the analyses and the figures."""
    metric = info.get("metric", "val/top1")
    best, last = best_entry(history, metric), history[-1]
    k = len(table) if table is not None else int(round(1 / best["chance/uniform"]))
    status = info.get("status", "running")
    lines = [
        f"# {info.get('run_name', 'run')}: {info.get('arch', '')}, {k} names", "",
        f"- status: **{status}**, {last['epoch']} of {info.get('epochs', '?')} epochs",
        f"- best epoch by `{metric}`: **{best['epoch']}**; top-1 **{best['val/top1']:.4f}**, "
        f"top-5 {best['val/top5']:.4f}, balanced accuracy {best['val/balanced_acc']:.4f}, "
        f"macro-F1 {best['val/macro_f1']:.4f} (over the {best['val/names_present']} names "
        f"present in val, {best['val/images']} images)",
        f"- chance: uniform {best['chance/uniform']:.4f}, majority {best['chance/majority']:.4f}, "
        f"prior-matching {best['chance/prior_match']:.4f}",
        f"- prediction CV: relative **{best['val/rel_pred_cv']:.3f}**; seed's "
        f"{best['val/pred_cv']:.3f} against true-count CV {best['val/true_cv']:.3f}",
        f"- training time {sum(h['time/epoch_s'] for h in history) / 60:.1f} min; throughput "
        f"{np.mean([h['train/img_per_s'] for h in history]):.0f} img/s (global); data wait "
        f"{np.mean([h['data/wait_frac'] for h in history]):.0%} of train time",
    ]
    if info.get("device") == "cuda":
        lines.append(f"- peak GPU memory {max(h['gpu/peak_mem_gb'] for h in history):.2f} GB "
                     "per worker")
    lines.append(f"- images dropped as undecodable: {sum(h['data/bad_images'] for h in history)}"
                 " over the run")
    if info.get("error"):
        lines.append(f"- error: {info['error']}")
    inf = (extras or {}).get("inference", {})
    lines += ["", "## Success criteria", "",
              *criteria_table(criteria_rows(k, best, bool(last["diverged"]), inf=inf)),
              "", CV_NOTE]
    if inf and "error" not in inf:
        lines += held_out_lines(inf.get("test"))
    if extras:
        lines += render_extras(extras, best, k)
    lines += inference_lines(inf, best)
    lines += tau_lines(tau_tradeoff(best, REL_CV_TARGET), info.get("class_weights", "none"),
                       info.get("logit_adjust_tau", 0.0))
    if table is not None:
        present = table[table["support"] > 0]
        spread = accuracy_spread(table)
        lines += ["", "- per-class accuracy spread (best epoch, names in val): " +
                  ", ".join(f"{k} {v:.3f}" for k, v in spread.items())]
        ranked = present.sort_values(["f1", "support"], ascending=[False, False])
        for title, part in (("Top-5 names by F1", ranked.head(5)),
                            ("Bottom-5 names by F1", ranked.tail(5).iloc[::-1])):
            lines += ["", f"## {title}", "", "| name | F1 | precision | recall | support | "
                      "train images |", "|---|---|---|---|---|---|"]
            lines += [f"| {r.name} | {r.f1:.3f} | {r.precision:.3f} | {r.recall:.3f} | "
                      f"{r.support} | {r.train_count} |" for r in part.itertuples()]
        absent = table[table["support"] == 0]["name"].tolist()
        if absent:
            lines += ["", f"Names with no val images ({len(absent)}, not ranked): " +
                      ", ".join(absent[:30]) + (" ..." if len(absent) > 30 else "")]
    lines += ["", "## Curves", "",
              "| epoch | lr | train loss | train acc | val top-1 | balanced | rel. pred CV | "
              "img/s |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['train/lr']:.2e} | {h['train/loss']:.4f} | "
              f"{h['train/acc']:.4f} | {h['val/top1']:.4f} | {h['val/balanced_acc']:.4f} | "
              f"{h['val/rel_pred_cv']:.3f} | {h['train/img_per_s']:.0f} |" for h in history]
    if extras:
        lines += figure_lines(extras)
    return "\n".join(lines) + "\n"


def tau_lines(tau: TauChoice, class_weights: str, logit_adjust_tau: float = 0.0
              ) -> list[str]:
    """The post-hoc logit adjustment table at the best epoch and the tau that meets the CV
    target, or the note that none does."""
    lines = ["", "## Skew control: post-hoc logit adjustment (best epoch)", "",
             posthoc_note(class_weights, logit_adjust_tau), "",
             "| tau | top-1 | balanced | relative pred CV |", "|---|---|---|---|"]
    lines += [f"| {r['tau']:g} | {r['top1']:.4f} | {r['balanced_acc']:.4f} | "
              f"{r['rel_pred_cv']:.3f} |" for r in tau.rows]
    lines.append("")
    if tau.best is not None:
        lines.append(f"tau = {tau.best['tau']:g} meets relative prediction CV < "
                     f"{REL_CV_TARGET} with the best top-1 ({tau.best['top1']:.4f}).")
    else:
        lines.append(f"No tau from 0 to {tau.rows[-1]['tau']:g} brings the relative prediction "
                     f"CV under {REL_CV_TARGET}.")
    return lines


def posthoc_note(class_weights: str, logit_adjust_tau: float = 0.0) -> str:
    if logit_adjust_tau > 0:
        return (f"This model was trained with logit adjustment (tau = {logit_adjust_tau:g}), "
                "which already corrects for the prior: subtracting tau x log(prior) on top "
                "corrects twice. The rows below show that over-correction, not a fair skew "
                "trade-off.")
    if class_weights == "none":
        return ("Predictions after subtracting tau x log(train prior) from the logits (Menon et "
                "al. 2021): the trade-off between accuracy and prediction skew on this "
                "unweighted model.")
    return (f"This model was trained with `{class_weights}` class weights, which already "
            "correct for the prior: subtracting tau x log(prior) on top corrects twice. The "
            "rows below show that over-correction, not a fair skew trade-off.")


def design_lines(d: dict | None) -> list[str]:
    """People per name behind the person-level intervals, and the warning when they are too
    few to mean anything (analysis.people_per_name)."""
    if not d:
        return []
    single = d["single_train_person"]
    lines = ["", "## Design: people per name", "",
             *[f"**Warning: {w}.**" for w in d["warnings"]],
             f"- {d['few_val_people']} of {d['names_in_val']} names in val have at most 2 val "
             "people; median people per name: train "
             f"{np.median(d['train_people']):g}, val {np.median(d['val_people']):g}"
             + (f", test {np.median(d['test_people']):g}" if "test_people" in d else "") + ".",
             f"- {len(single)} names have a single train person "
             f"({d['single_train_person_images']} of {d['train_images_total']} train images)"
             + (": " + ", ".join(single[:20]) + (" ..." if len(single) > 20 else "")
                if single else "."),
             "- per name, train and val people and images: `inference.json` (`design`)."]
    return lines


def render_extras(extras: dict, best: dict, k: int) -> list[str]:
    """The sections only the full report has (raysys report): floors, figures, analyses."""
    lines: list[str] = []
    fl = extras.get("floors")
    if fl:
        px, meta = fl["pixel_linear"], fl["metadata_probe"]
        lines += ["", "## Against chance and the floors", "",
                  "| reference (val) | top-1 | balanced accuracy |", "|---|---|---|",
                  f"| chance: uniform guess (1/K) | {best['chance/uniform']:.4f} | "
                  f"{best['chance/uniform']:.4f} |",
                  f"| chance: always the largest name | {best['chance/majority']:.4f} | "
                  f"{balanced_chance(best):.4f} |",
                  f"| pixel-linear floor: logistic regression on {fl['features']['pixels']} "
                  f"| {px['top1']:.4f} | {px['balanced_acc']:.4f} |",
                  f"| metadata probe (size, aspect, bytes, colour; no face) | "
                  f"{meta['top1']:.4f} | {meta['balanced_acc']:.4f} |",
                  f"| **this model** | **{best['val/top1']:.4f}** | "
                  f"**{best['val/balanced_acc']:.4f}** |"]
        bs = extras.get("balanced_subset")
        if bs and bs["images"]:
            lines.append(f"| this model, class-balanced val subset ({bs['per_name']} per name, "
                         f"{bs['images']} images) | {bs['top1']:.4f} | "
                         f"{bs['balanced_acc']:.4f} |")
        outside = meta["balanced_acc"] - balanced_chance(best)
        lines += ["", f"Name signal outside the face: the metadata probe reaches balanced "
                  f"accuracy {meta['balanced_acc']:.4f} against chance "
                  f"{balanced_chance(best):.4f} ({outside:+.4f}). "
                  + ("That is above chance: part of what any model scores may come from "
                     "image format, not faces." if outside > 0.02 else
                     "That is at chance: no measurable signal in the image format.")
                  + f" The floors use the training centre crop ({fl['center_crop']:g}) and "
                  "balanced class weights, fitted on train and scored on val."]
    lines += design_lines(extras.get("design"))
    lk = extras.get("leakage")
    if lk:
        lines += ["", "## Identity leakage", ""]
        if lk["seen"]["images"] and lk["unseen"]["images"]:
            gap = lk["seen"]["top1"] - lk["unseen"]["top1"]
            lines += [f"- val images whose person also has train images: top-1 "
                      f"{lk['seen']['top1']:.4f} ({lk['seen']['images']} images)",
                      f"- val images of people never seen in training: top-1 "
                      f"{lk['unseen']['top1']:.4f} ({lk['unseen']['images']} images)"]
            lines += leakage_verdict(gap, lk["seen"].get("majority_top1", float("nan"))
                                     - lk["unseen"].get("majority_top1", float("nan")),
                                     lk.get("within_name"))
        else:
            side = "unseen" if lk["unseen"]["images"] else "seen"
            lines.append(f"- every val image is {side} (data.split_by={lk['split_by']}): "
                         f"top-1 {lk[side]['top1']:.4f} on {lk[side]['images']} images; "
                         + ("person-disjoint, so no leakage is possible." if side == "unseen"
                            else "no person-disjoint images to compare with."))
    if lk and lk.get("ungrouped"):
        lines.append(f"- {lk['ungrouped']} val images have no person id: in neither set.")
    if "bands" in extras:
        lines += ["", "## Accuracy by name frequency", "",
                  "Bands by train images per name, scaled to this data set's largest name "
                  "(production: Many > 1000, Medium 200-1000, Few < 200); accuracy is the "
                  "mean per-name accuracy over the band's names in val.", "",
                  "| band | train images per name | names (in val) | val images | "
                  "mean per-name accuracy |", "|---|---|---|---|---|"]
        lines += [f"| {r['band']} | {r['train images per name']} | {r['names']} "
                  f"({r['names in val']}) | {r['val images']} | {r['accuracy']:.4f} |"
                  for r in extras["bands"]]
        lines += ["", f"Calibration: ECE {extras['ece']:.4f} (15 bins)."]
    return lines


def inference_lines(inf: dict, best: dict) -> list[str]:
    """Intervals, the selection-free estimate, its paired differences with every floor, the
    permutation test, the power, and the demographic controls. The live summary, before
    `raysys report`, says they are to come."""
    if not inf:
        return ["", "## Beyond gender and generation", "",
                "Computed by `raysys report` at the end of the run (the demographic controls, "
                "person-level and paired intervals, the permutation tests and the "
                "selection-free estimate)."]
    if "error" in inf:
        return ["", "## Intervals and demographic controls", "",
                f"**Not computed: {inf['error']}** (`raysys report RUN_DIR` retries)."]
    c = inf["clusters"]
    sf = inf.get("selection_free")
    mc = max([iv.mc_se for iv in _intervals(inf)] or [0.0])
    lines = ["", "## Intervals: selected on val, selection-free, and against the floors", "",
             f"95% percentile intervals from {c.get('draws', 1000):,} Rao-Wu resamples of whole "
             "people within each name, the names with one val person pooled (each drawn one "
             "counts as a name), widened by t(df)/z for the few people per name "
             f"({c['people']} "
             f"people; {c['clusters'] - c['people']} val images without a person id count as "
             f"their own cluster; {c['images']} images); an accuracy's interval also holds a "
             "Wilson score interval at the effective number of images (the resamples cannot "
             "show a kind of person a name's few people lack), and a difference from a "
             "floor the interval recovered from the two sides' own (MOVER); "
             f"the endpoints' Monte Carlo SE is at most {mc:.4f}, and a verdict needs its "
             "bound beyond 0 by twice that. Paired rows resample the same people for the model "
             "and the floor. Verdicts read the selection-free rows only: the selected epoch "
             "scored on the val that chose it is optimistic."
             + (f" {c['names_under_5']} of {c['names']} names have fewer than 5 val people "
                "(clusters): their recall moves with the people drawn, so the intervals are "
                "wide and can be skewed." if c.get("names_under_5") else ""), "",
             "| | top-1 | balanced accuracy |", "|---|---|---|",
             f"| this model, **selected on val** (best epoch {best['epoch']}, reported on the "
             f"same val; descriptive) | {inf['model']['top1']} | "
             f"{inf['model']['balanced_acc']} |"]
    if sf:
        lo, mid, hi = sf["epochs_chosen"]
        lines.append(f"| this model, **selection-free** (mean over {sf['halvings']} halvings of "
                     f"val's people, name by name; each half scored by the epoch chosen on the "
                     f"other by `{sf['metric']}`: epochs {lo}-{hi}, median {mid}, from "
                     f"{sf['covers']}; the interval redoes every choice of "
                     f"{sf.get('halvings_in_interval', sf['halvings'])} halvings in each "
                     "resample) | "
                     f"{sf['top1']} | {sf['balanced_acc']} |")
    for name, diff in inf["vs"].items():
        lines.append(f"| this model - {name} (selection-free, paired) | {diff['top1']} | "
                     f"{diff['balanced_acc']} |")
    lines += ["", *verdict_lines(inf["vs"])]
    sig = inf.get("signal")
    if sig:
        lines.append(f"- **Any name signal** (person-level permutation test, the epoch choice "
                     f"inside): best balanced accuracy over {sig['epochs']} epochs "
                     f"{sig['observed']:.4f}; with names dealt at random to val's "
                     f"{sig['people']} people it averages {sig['null_mean']:.4f} (95th "
                     f"percentile {sig['null_95']:.4f}). p = {sig['p']:.4f} (Monte Carlo SE "
                     f"{sig['mc_se']:.4f}, {sig['permutations']:,} permutations): "
                     + ("**shown**." if sig["shown"] else "none that can be shown."))
    pw = inf.get("power")
    if pw:
        lines.append(f"- **Power**: the smallest difference from a floor the selection-free "
                     f"balanced accuracy detects with 80% power at alpha 0.05 is about "
                     f"{pw['mde']:.4f} (resampling SD {pw['sd']:.4f}, median "
                     f"{pw['median_people_per_name']:g} val people per name). To detect +0.01 "
                     f"would take about {pw['people_for']['0.01']:,} val people per name, "
                     f"+0.02 about {pw['people_for']['0.02']:,} (SD as 1/sqrt(people)).")
    if inf.get("pixel_unscored"):
        lines.append(f"- {inf['pixel_unscored']} val images the pixel floor could not decode "
                     "count as its misses.")
    if not sf:
        lines.append(f"- No selection-free estimate: {inf.get('selection_free_missing', '')}; "
                     "no verdict against the floors.")
    return lines + demographic_lines(inf)


LEAKY_TEST = ("**Warning: test shares people with train** (data.split_by=image): recognising "
              "those people counts as name signal here, so no verdict below answers whether a "
              "face carries its name. That needs a person-disjoint split (data.split_by=group).")


LEAKY_VAL = LEAKY_TEST.replace("test shares", "val shares")


def held_out_lines(test: dict | None) -> list[str]:
    """The held-out test split, scored once by the model val chose: the primary endpoint."""
    lines = ["", "## Held-out test split: the primary endpoint", ""]
    if not test:
        return lines + ["No test split (data.test_fraction = 0): the verdicts below read the "
                        "selection-free estimates on val."]
    m, sig, pr = test["model"], test["signal"], test["primary"]
    lines += [f"Scored once, by the model of the epoch val chose; nothing was chosen on it. "
              f"{test['images']} images of {test['people']} people under {test['names']} "
              f"names. Top-1 {m['top1']}, balanced accuracy {m['balanced_acc']} (95% "
              f"person-level intervals). Any name signal: permutation p = {sig['p']:.4f} "
              f"(names dealt to test's people), "
              + ("**shown**." if sig["shown"] else "none that can be shown."), ""]
    if not test.get("person_disjoint", True):
        lines += [LEAKY_TEST, ""]
    if "difference" not in pr:
        return lines + [f"Primary endpoint ({pr['endpoint']}): not computed, "
                        f"{pr.get('missing', '')}."]
    d, beyond, pw = pr["difference"], pr["beyond"], pr["power"]
    lines += [f"**Primary endpoint: {pr['endpoint']}** ({pr['images']} test images whose name "
              f"has demographics). Within-gender balanced accuracy {pr['within']:.4f}, gender "
              f"floor {pr['floor']:.4f}: difference **{d}** (paired 95%, Monte Carlo SE "
              f"{d.mc_se:.4f}), **{d.verdict()}** the floor. Permutation test (names dealt "
              f"among each gender's people): p = {beyond['p']:.4f}, name signal beyond gender "
              + ("**shown**." if beyond["shown"] else "not shown."),
              f"- Power: the smallest difference this test split detects with 80% power at "
              f"alpha 0.05 is about {pw['mde']:.4f} (SD {pw['sd']:.4f}, median "
              f"{pw['median_people_per_name']:g} test people per name); +0.01 would take "
              f"about {pw['people_for']['0.01']:,} test people per name, +0.02 about "
              f"{pw['people_for']['0.02']:,}."]
    return lines


def _free_label(name: str) -> str:
    return "this model, selection-free" if name == "this model" else \
        f"this model - {name} (selection-free, paired)"


def _intervals(d: object) -> list[Interval]:
    if isinstance(d, Interval):
        return [d]
    if isinstance(d, dict):
        return [iv for v in d.values() for iv in _intervals(v)]
    return []


def verdict_lines(vs: dict) -> list[str]:
    """One sentence per floor, as its selection-free paired interval of balanced accuracy
    allows."""
    out = []
    for name, diff in vs.items():
        d = diff["balanced_acc"]
        out.append(f"- Balanced accuracy is **{d.verdict()}** the {name}: difference {d}"
                   + ("." if d.verdict() != "level with" else
                      ", an interval that holds 0: no difference can be shown."))
    return out


def demographic_lines(inf: dict) -> list[str]:
    demo = inf["demographics"]
    lines = ["", "## Beyond gender and generation", "",
             "First names carry gender and generation, so a model that reads only those from a "
             "face beats chance without learning names. Source: " + demo["source"] + ". "
             "Each name's P(female), median birth year and generation: demographics.csv."]
    if not demo["known"]:
        return lines + ["", f"None of the {demo['names']} names has demographic data: no "
                        "gender or generation controls for this run (give data.demographics, "
                        "a CSV of name,p_female,birth_year)."]
    free = inf.get("vs_known_free", {})
    if not inf.get("person_disjoint", True):
        lines += ["", LEAKY_VAL]
    lines += ["", f"On the {demo['images']} of {demo['val_images']} val images whose name has "
              "data (names without it would form a stratum of mixed genders). Gender is the "
              "name's majority gender among its living US bearers; generation is the band of "
              "their median birth year: the name's cohort, not the faces' age. The floor knows "
              "each face's stratum and nothing else: top-1 always guesses the stratum's most "
              "frequent train name among the names in val; balanced accuracy is then strata/K. "
              "The verdict on name signal beyond a stratum is a permutation test: names dealt "
              "at random among the people of each stratum, the epoch choice inside; a model "
              "that reads only the stratum keeps its score under that shuffle.", "",
              "| | top-1 | balanced accuracy |", "|---|---|---|",
              f"| this model, selected on val (descriptive) | "
              f"{inf['vs_known']['this model']['top1']} | "
              f"{inf['vs_known']['this model']['balanced_acc']} |",
              *(f"| {_free_label(name)} | {d['top1']} | {d['balanced_acc']} |"
                for name, d in free.items()),
              "", "| control | strata | floor top-1 | floor balanced | within-stratum chance "
              "(uniform) top-1 / balanced | within stratum, selected epoch (descriptive): "
              "top-1 / balanced | within stratum, selection-free: balanced (95%) | "
              "beyond the stratum: permutation p |", "|---|---|---|---|---|---|---|---|"]
    for by in ("gender", "gender x generation"):
        ctl = inf[by]
        w, b, f = ctl.get("within"), ctl.get("beyond"), ctl.get("within_free", {})
        lines.append(f"| {by} | {ctl['strata']} | {ctl['floor']['top1']:.4f} | "
                     f"{ctl['floor']['balanced_acc']:.4f} | {ctl['chance']['top1']:.4f} / "
                     f"{ctl['chance']['balanced_acc']:.4f} | "
                     + (f"{w['top1']:.4f} / {w['balanced_acc']:.4f}" if w else "n/a") + " | "
                     + (f"{f['balanced_acc']}" if "balanced_acc" in f else "n/a") + " | "
                     + (f"{b['p']:.4f}" if b else "n/a") + " |")
    lines += ["", *verdict_lines({k: v for k, v in free.items() if k != "this model"})]
    for by in ("gender", "gender x generation"):
        f = inf[by].get("within_free", {})
        if "vs_floor" in f:
            d = f["vs_floor"]["balanced_acc"]
            lines.append(f"- Within-{by} balanced accuracy minus the {by} floor, selection-free"
                         f"{' (the primary endpoint, read on val)' if by == 'gender' else ''}"
                         f": {d}: **{d.verdict()}** 0.")
        elif "missing" in f:
            lines.append(f"- Within-{by} accuracy, selection-free: not computed ({f['missing']}).")
    for by in ("gender", "gender x generation"):
        b = inf[by].get("beyond")
        lines.append(f"- **Name signal beyond {by}**: " + (
            "not decided (no val predictions by epoch)." if not b else
            f"p = {b['p']:.4f} (Monte Carlo SE {b['mc_se']:.4f}): "
            + ("**shown**." if b["shown"] else "none that can be shown.")))
    lines += soft_gender_lines(inf.get("soft_gender"))
    e = inf.get("errors", {})
    if "same_gender" in e:
        lo, hi = e["same_gender_chance_range"]
        ylo, yhi = e["year_gap_chance_range"]
        lines.append(f"- Errors: of {e['with_demographics']} wrong predictions with data on both "
                     f"names ({e['people']} people), {e['same_gender']:.1%} name the truth's "
                     f"gender (true names dealt at random among those people: "
                     f"{e['same_gender_chance']:.1%}, 95% {lo:.1%}-{hi:.1%}); the "
                     f"predicted and true names' median birth years differ by "
                     f"{e['year_gap']:.1f} years on average (dealt at random: "
                     f"{e['year_gap_chance']:.1f}, 95% {ylo:.1f}-{yhi:.1f}).")
    return lines


def soft_gender_lines(sg: dict | None) -> list[str]:
    """The beyond-gender test with unisex names left out, and which names those are."""
    if not sg:
        return []
    half, sure = sg.get("beyond_at_half"), sg.get("beyond")
    line = ("- Soft gender: with gender cut at P(female) 0.5 (every name with data) p = "
            + (f"{half['p']:.4f}" if half else "n/a") + f"; cut at {sg['cut']:g} (the "
            f"{sg['names']} names at least that sure, {sg['images']} val images) p = "
            + (f"{sure['p']:.4f} ({'shown' if sure['shown'] else 'none shown'})" if sure
               else "n/a") + ". ")
    line += (f"Unisex names (P(female) between {1 - sg['cut']:.1f} and {sg['cut']:g}, left "
             f"out at that cut): {', '.join(sg['unisex']) or 'none'}. Names without data: "
             f"{', '.join(sg['unknown'][:30]) or 'none'}" + (" ..." if len(sg["unknown"]) > 30
                                                              else "") + ".")
    return [line]


def leakage_verdict(gap: float, baseline_gap: float, within: Interval | None = None
                    ) -> list[str]:
    """The raw seen/unseen gap, the same gap of "always the largest train name" (the two sets
    hold different names, so a constant guess has a gap of its own: +0.173 on LFW's per-image
    split), and the verdict, read on each name against itself (analysis.within_name_gap)."""
    line = f"- gap {gap:+.4f}"
    if baseline_gap == baseline_gap:
        line += (f"; the constant guess \"always the largest train name\" has a gap of "
                 f"{baseline_gap:+.4f} on the same images, so the raw gap mixes names")
    if within is None:
        return [line + ". No name has both seen and unseen val people: no verdict."]
    v = within.verdict()
    return [line + ".", f"- within names, seen minus unseen recall weighted by the seen "
            f"images' names: {within} (95%, people resampled): " + (
                "**the model recognises people it was trained on** beyond their names."
                if v == "above" else "no recognition of seen people shown."
                if v == "level with" else "seen people score lower than unseen ones.")]


def figure_lines(extras: dict) -> list[str]:
    figures = extras.get("figures", {})
    captions = {"curves.png": "loss and accuracy per epoch",
                "f1_vs_train_images.png": "per-name F1 against train images",
                "prediction_histogram.png": "predicted against true val counts",
                "confusion_top20.png": "confusion of the 20 largest names",
                "reliability.png": "reliability diagram",
                "accuracy_by_frequency.png": "accuracy by name frequency",
                "skew_control.png": "skew control", "embeddings_pca.png": "val embeddings",
                "attention_maps/contact_sheet.png": "attention rollout (Abnar & Zuidema "
                                                    "2020), top and bottom names by F1"}
    shown = [f for f in captions if f in figures]
    if not shown:
        return []
    return ["", "## Figures", "", *(f"![{captions[f]}]({f})" for f in shown)]
