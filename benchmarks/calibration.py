"""Calibration of every verdict the report prints, by simulation through the report's own code
(issue 27): data whose truth is known, at LFW's shape and at production's.

- **False positives** under the null, with per-person effects that persist across epochs (a
  person's look draws the same wrong name epoch after epoch) and the selection inside, as a run
  makes it: "any name signal" (PersonPermutation), "beyond gender" (the stratified test, on a
  model that reads only gender), "beats chance, selection-free" (the cross-fitted interval's
  lower bound), leakage "recognises seen people" (within names, equal recall seen or not), and
  the error analysis' "outside the permutation range" (errors blind to gender, persistent).
- **The primary endpoint** (within-gender balanced accuracy - gender floor, on a test split
  scored once): logits that read gender and a persistent per-person look but no name, its
  paired interval's "above" and its permutation test's "shown" (false positives), the
  interval's coverage of 0, and both at an effect within gender that doubles chance (power).
- **Within gender, selection-free on val**: the argmax within the face's gender that the loop
  saves every epoch, cross-fitted, minus the gender floor: "above" for a model that reads only
  gender (false positives), its interval's coverage of 0, and "above" at 2x within-gender
  chance (power).
- **Coverage** of the 95% intervals: the person-level interval of balanced accuracy (Rao-Wu
  percentile and score, people of unequal skill, Beta(2, 5): truth 2/7), and the
  selection-free interval of pure noise (truth 1/K).
- **Power** at an effect that doubles chance (each image right with probability 1/K more).

    python benchmarks/calibration.py            # ~10 min on two cores: benchmarks/CALIBRATION.md
    python benchmarks/calibration.py --quick    # LFW shape, fewer runs (the test's version)
    python benchmarks/calibration.py --selection-free-runs 1000   # that interval alone, ~3 min

A verdict holds its rate when its false-positive rate is at most 5% plus two Monte Carlo SEs,
and an interval when it covers at least 93%.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raysys.report.analysis import within_name_gap
from raysys.report.controls import error_analysis, primary_endpoint, stratum_floor
from raysys.report.intervals import ClusterBootstrap, cross_fitted, halves
from raysys.report.permutation import PersonPermutation

ROOT = Path(__file__).resolve().parents[1]
PERSIST = 0.6  # share of a person's guesses, every epoch, that are that person's own name


@dataclass(frozen=True)
class Shape:
    """A val set: `names` names, val people per name from a power law between 1 and
    `max_people`, images per person from a geometric law of mean `images`, `epochs`."""
    label: str
    names: int
    max_people: int
    images: float
    epochs: int

    def val(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        per_name = np.maximum(1, np.round(self.max_people * rng.random(self.names) ** 2.5)
                              ).astype(int)
        name = np.repeat(np.arange(self.names), per_name)
        person = np.repeat(np.arange(len(name)), rng.geometric(1 / self.images, len(name)))
        return person, name[person]


# LFW top-20 person-disjoint: 19 scored names, 1-20 val people each, images per person heavy
# (LFW: 26.7 size-weighted); production: 500 names, ~87k val images, ~10 per person.
LFW = Shape("LFW (19 names, 1-20 people per name, ~6 images per person)", 19, 20, 6.0, 30)
PRODUCTION = Shape("production (500 names, ~87k val images, ~10 per person)", 500, 60, 10.0, 30)
GENDER_OF = np.arange(1000) % 2  # names alternate F/M


def persistent(rng, person: np.ndarray, labels: np.ndarray, k: int, epochs: int,
               hit: float = 0.0, gender_only: bool = False) -> np.ndarray:
    """(epochs, images) predictions: with probability `hit` the truth; else PERSIST of the time
    the person's own fixed guess, otherwise a fresh one. Guesses are any name, or a name of the
    face's gender (`gender_only`: a model that reads gender and nothing else)."""
    n = len(person)

    def guess(shape, g):
        if not gender_only:
            return rng.integers(0, k, shape)
        return 2 * rng.integers(0, k // 2, shape) + g

    own = guess(person.max() + 1, GENDER_OF[np.bincount(person, labels).astype(int)
                                             // np.bincount(person)])[person]
    fresh = guess((epochs, n), GENDER_OF[labels])
    preds = np.where(rng.random((epochs, n)) < PERSIST, own, fresh)
    return np.where(rng.random((epochs, n)) < hit, labels, preds)


def mc(rate: float, runs: int) -> float:
    return float(np.sqrt(max(rate * (1 - rate), 1e-12) / runs))


def permutation_rates(shape: Shape, runs: int, perms: int, seed: int = 0) -> dict:
    """FPR and power of "any name signal" and "beyond gender"."""
    rng = np.random.default_rng(seed)
    k, e = shape.names, shape.epochs
    claims = {"any: null": 0, "any: 2x chance": 0, "beyond gender: gender only": 0,
              "beyond gender: 2x chance": 0}
    for run in range(runs):
        person, labels = shape.val(rng)
        for key, hit, gender_only, strata in (
                ("any: null", 0.0, False, None), ("any: 2x chance", 1 / k, False, None),
                ("beyond gender: gender only", 0.0, True, GENDER_OF[:k]),
                ("beyond gender: 2x chance", 1 / k, True, GENDER_OF[:k])):
            preds = persistent(rng, person, labels, k, e, hit, gender_only)
            test = PersonPermutation(preds, labels, person, True).test(
                strata=strata, permutations=perms, seed=run)
            claims[key] += test["p"] <= 0.05
    return {key: v / runs for key, v in claims.items()}


def interval_rates(shape: Shape, runs: int, draws: int, halvings: int, seed: int = 0) -> dict:
    """Coverage of the person-level percentile interval and of the selection-free one, and the
    selection-free "beats chance" FPR; the leakage and error-analysis FPRs."""
    rng = np.random.default_rng(seed)
    k, e = shape.names, shape.epochs
    truth = 2 / 7  # people of unequal skill, Beta(2, 5): every name's expected recall
    out = {"covers": 0, "selection-free covers": 0, "selection-free beats chance: null": 0,
           "leakage: equal recall": 0, "errors outside range: blind": 0}
    for run in range(runs):
        person, labels = shape.val(rng)
        boot = ClusterBootstrap(person, labels, n_boot=draws, seed=run)
        p = rng.beta(2, 5, person.max() + 1)[person]
        preds = np.where(rng.random(len(p)) < p, labels, (labels + 1) % k)
        iv = boot.interval(preds, True)
        out["covers"] += iv.lo <= truth <= iv.hi
        noise = persistent(rng, person, labels, k, e)
        sides = halves(person, labels, run, n_splits=halvings)
        cf = cross_fitted(noise, labels, np.ones(e, bool), sides, True)
        if cf is not None:
            free = boot.cross_fitted(noise, np.ones(e, bool), sides, True, cf)["balanced_acc"]
            out["selection-free covers"] += free.lo <= 1 / k <= free.hi
            out["selection-free beats chance: null"] += free.lo - 1 / k > 2 * free.mc_se
        seen = (rng.random(person.max() + 1) < np.where(labels[np.unique(person, True)[1]]
                                                        < k // 4, 0.8, 0.2))[person]
        gap = within_name_gap(boot, seen, noise[0])
        out["leakage: equal recall"] += gap is not None and gap.verdict() == "above"
        # the errors of persistent noise (the analysis reads errors only; replacing the hits by
        # some other name would tie those to the truth's gender)
        errs = error_analysis(labels, noise[0], person, GENDER_OF[:k].astype(str),
                              rng.uniform(1940, 2000, k), seed=run, permutations=200)
        lo, hi = errs["same_gender_chance_range"]
        out["errors outside range: blind"] += not lo <= errs["same_gender"] <= hi
    return {key: v / runs for key, v in out.items()}


def within_rates(shape: Shape, runs: int, draws: int, halvings: int, seed: int = 0) -> dict:
    """Within-gender balanced accuracy minus the gender floor, selection-free on val (the loop's
    saved argmax within the face's gender, every epoch, cross-fitted): "above" and coverage of
    0 for a model that reads gender and nothing else (persistent per-person guesses among the
    face's gender's names: it scores the floor), and "above" at 2x within-gender chance."""
    rng = np.random.default_rng(seed)
    k, e, gender = shape.names, shape.epochs, GENDER_OF[:shape.names]
    out = {"within free above: gender only": 0, "within free covers 0": 0,
           "within free above: 2x chance": 0}
    for run in range(runs):
        person, labels = shape.val(rng)
        boot = ClusterBootstrap(person, labels, n_boot=draws, seed=run)
        sides = halves(person, labels, run, n_splits=halvings)
        floor = stratum_floor(labels, gender, rng.integers(10, 200, k))
        for effect, hit in (("gender only", 0.0), ("2x chance", 2 / k)):
            within = persistent(rng, person, labels, k, e, hit, gender_only=True)
            cf = cross_fitted(within, labels, np.ones(e, bool), sides, True)
            if cf is None:
                continue
            d = boot.cross_fitted(within, np.ones(e, bool), sides, True, cf,
                                  {"floor": floor})["vs"]["floor"]["balanced_acc"]
            out[f"within free above: {effect}"] += d.verdict() == "above"
            if hit == 0.0:
                out["within free covers 0"] += d.lo <= 0 <= d.hi
    return {key: v / runs for key, v in out.items()}


def primary_rates(shape: Shape, runs: int, draws: int, perms: int, seed: int = 0) -> dict:
    """The primary endpoint's verdicts on logits of a model that reads gender (a large offset
    on the names of the face's gender) and a per-person look (PERSIST of the variance, fixed
    across the person's images), with no name (null) or with the true name lifted above the
    rest for a share 2/K of the images (about twice within-gender chance)."""
    rng = np.random.default_rng(seed)
    k, gender = shape.names, GENDER_OF[:shape.names]
    out = {"primary above: null": 0, "primary shown: null": 0, "primary covers 0": 0,
           "primary above: 2x chance": 0, "primary shown: 2x chance": 0}
    for run in range(runs):
        person, labels = shape.val(rng)
        look = rng.standard_normal((person.max() + 1, k), np.float32)[person]
        logits = np.sqrt(PERSIST) * look + np.sqrt(1 - PERSIST) * rng.standard_normal(
            (len(person), k), np.float32)
        logits += 5 * (gender[None, :] == gender[labels][:, None])
        counts = rng.integers(10, 200, k)
        for effect, hit in (("null", 0.0), ("2x chance", 2 / k)):
            lifted = logits.copy()
            on = rng.random(len(labels)) < hit
            lifted[on, labels[on]] += 10
            got = primary_endpoint(lifted, labels, lifted.argmax(axis=1), person, gender,
                                   counts, seed=run, n_boot=draws, permutations=perms)
            out[f"primary above: {effect}"] += got["verdict"] == "above"
            out[f"primary shown: {effect}"] += got["beyond"]["p"] <= 0.05
            if effect == "null":
                d = got["difference"]
                out["primary covers 0"] += d.lo <= 0 <= d.hi
    return {key: v / runs for key, v in out.items()}


def selection_free_coverage(shape: Shape, runs: int, draws: int = 1000, halvings: int = 20,
                            seed: int = 123) -> dict:
    """The selection-free interval of pure noise alone, over many runs (its table row has 200):
    coverage of 1/K, and how the misses fall (wholly above or wholly below the truth)."""
    rng = np.random.default_rng(seed)
    k, e = shape.names, shape.epochs
    out = {"covers": 0, "above truth": 0, "below truth": 0}
    for run in range(runs):
        person, labels = shape.val(rng)
        boot = ClusterBootstrap(person, labels, n_boot=draws, seed=run + 10_000)
        noise = persistent(rng, person, labels, k, e)
        sides = halves(person, labels, run, n_splits=halvings)
        cf = cross_fitted(noise, labels, np.ones(e, bool), sides, True)
        free = boot.cross_fitted(noise, np.ones(e, bool), sides, True, cf)["balanced_acc"]
        out["covers"] += free.lo <= 1 / k <= free.hi
        out["above truth"] += free.lo > 1 / k
        out["below truth"] += free.hi < 1 / k
    return {key: v / runs for key, v in out.items()} | {"runs": runs}


def run(quick: bool) -> dict:
    plans = [(LFW, {"runs": 200, "perms": 500, "draws": 2000, "halvings": 20})]
    if quick:
        plans = [(LFW, {"runs": 60, "perms": 200, "draws": 400, "halvings": 4})]
    else:
        plans.append((PRODUCTION, {"runs": 80, "perms": 300, "draws": 500, "halvings": 2}))
    results = {}
    for shape, p in plans:
        t = time.time()
        got = permutation_rates(shape, p["runs"], p["perms"])
        got |= interval_rates(shape, p["runs"], p["draws"], p["halvings"])
        got |= within_rates(shape, p["runs"], p["draws"], p["halvings"])
        got |= primary_rates(shape, p["runs"], p["draws"], p["perms"])
        results[shape.label] = {"rates": got, "plan": p, "seconds": time.time() - t}
    return results


ROWS = (  # (key, kind, what the rate means)
    ("any: null", "fpr", "any name signal (permutation, best of 30 epochs), pure noise"),
    ("any: 2x chance", "power", "any name signal, an effect of 2x chance"),
    ("beyond gender: gender only", "fpr", "beyond gender, a model that reads only gender"),
    ("beyond gender: 2x chance", "power", "beyond gender, gender plus an effect of 2x chance"),
    ("selection-free beats chance: null", "fpr", "selection-free interval above chance, noise"),
    ("leakage: equal recall", "fpr", "recognises seen people, equal recall seen or unseen"),
    ("errors outside range: blind", "fpr", "errors share gender beyond the range, blind errors"),
    ("within free above: gender only", "fpr", "within-gender balanced accuracy above the "
     "gender floor, selection-free on val, a model that reads only gender"),
    ("within free above: 2x chance", "power", "within-gender above the gender floor, "
     "selection-free, 2x within-gender chance"),
    ("within free covers 0", "coverage", "within-gender minus gender floor, selection-free "
     "95% interval, a model that reads only gender (truth 0)"),
    ("primary above: null", "fpr", "primary endpoint on test above 0 (paired interval), a "
     "model that reads gender and a per-person look"),
    ("primary shown: null", "fpr", "primary endpoint's permutation test, the same model"),
    ("primary above: 2x chance", "power", "primary endpoint above 0, 2x within-gender chance"),
    ("primary shown: 2x chance", "power", "primary endpoint's permutation test, 2x chance"),
    ("primary covers 0", "coverage", "primary endpoint's paired 95% interval, null (truth 0)"),
    ("covers", "coverage", "person-level 95% interval of balanced accuracy (Rao-Wu percentile "
     "and score), people of unequal skill"),
    ("selection-free covers", "coverage", "selection-free 95% interval (percentile and score), "
     "noise (truth 1/K)"),
)


def table(results: dict) -> str:
    lines = ["| shape | verdict or interval | kind | rate | Monte Carlo SE | holds |",
             "|---|---|---|---|---|---|"]
    for label, r in results.items():
        n = r["plan"]["runs"]
        for key, kind, what in ROWS:
            rate = r["rates"][key]
            ok = {"fpr": rate <= 0.05 + 2 * mc(0.05, n), "coverage": rate >= 0.93,
                  "power": "-"}[kind]
            lines.append(f"| {label} | {what} | {kind} | {rate:.3f} | {mc(rate, n):.3f} | "
                         f"{ok if ok == '-' else ('yes' if ok else '**no**')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    a = argparse.ArgumentParser(description=__doc__)
    a.add_argument("--quick", action="store_true")
    a.add_argument("--out", default=str(ROOT / "benchmarks" / "CALIBRATION.md"))
    a.add_argument("--selection-free-runs", type=int, default=0,
                   help="only the selection-free interval's coverage at LFW's shape, over this "
                        "many runs (1,000: ~3 min)")
    args = a.parse_args(argv)
    if args.selection_free_runs:
        got = selection_free_coverage(LFW, args.selection_free_runs)
        print(f"{LFW.label}: selection-free 95% interval of pure noise over {got['runs']} runs: "
              f"covers {got['covers']:.3f} (MC SE {mc(got['covers'], got['runs']):.3f}), "
              f"wholly above the truth {got['above truth']:.3f}, wholly below "
              f"{got['below truth']:.3f}")
        return got
    results = run(args.quick)
    text = table(results)
    print(text)
    if not args.quick:
        plans = "; ".join(f"{k}: {r['plan']['runs']} runs, {r['plan']['perms']} permutations, "
                          f"{r['plan']['draws']} draws, {r['plan']['halvings']} halvings, "
                          f"{r['seconds'] / 60:.1f} min" for k, r in results.items())
        Path(args.out).write_text(
            "# Calibration of the report's verdicts\n\n"
            "Regenerated by `python benchmarks/calibration.py` (its docstring says what each "
            "row simulates). A false-positive rate holds at most 5% plus two Monte Carlo SEs; "
            "an interval holds when it covers at least 93%; power is reported.\n\n"
            f"{text}\n\nPlan: {plans}.\n")
    return results


if __name__ == "__main__":
    main()
