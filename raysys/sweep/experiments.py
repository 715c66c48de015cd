"""The four experiments of the card, as a registry: `raysys sweep NAME`, `raysys sweep --list`,
and the thin `sweeps/<name>.py` scripts all look them up here.

An experiment is a search space over dotted config keys, the grid points evaluated first (each
exactly once), and fixed settings applied beneath the user's YAML, flags and --set.

Ray Tune is imported when an experiment is built, not with the registry: `raysys --help` and
`raysys manifest` list and parse without loading Ray.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Experiment:
    name: str
    title: str
    space: dict[str, Any]  # dotted config key -> Tune domain
    points: list[dict[str, Any]]  # evaluated first, each once; TPE samples any beyond them
    fixed: dict = field(default_factory=dict)  # {section: {key: value}} for every trial

    def num_samples(self, samples: int) -> int:
        """The grid, plus TPE samples if asked; a purely categorical space is never sampled
        past its grid, where TPE could only repeat a value."""
        from ray.tune.search.sample import Categorical

        n = max(samples, len(self.points))
        if all(isinstance(d, Categorical) for d in self.space.values()):
            n = min(n, math.prod(len(d.categories) for d in self.space.values()))
        return n


def grid(**values: list) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A categorical grid: the Tune space and every combination as a point. `a__b` = `a.b`."""
    from ray import tune

    keys = [k.replace("__", ".") for k in values]
    space = {k: tune.choice(v) for k, v in zip(keys, values.values(), strict=True)}
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values.values())]
    return space, points


EXPERIMENTS: dict[str, Callable[[int], Experiment]] = {}


def experiment(fn: Callable[[int], Experiment]) -> Callable[[int], Experiment]:
    """Register fn(num_names) -> Experiment under its function name."""
    EXPERIMENTS[fn.__name__] = fn
    return fn


@experiment
def baseline(num_names: int) -> Experiment:
    space, points = grid(loss__class_weights=["inverse"])
    return Experiment("baseline", "2.1 baseline: all names, class-weighted loss", space, points)


@experiment
def mixup(num_names: int) -> Experiment:
    from ray import tune

    space = {"augment.mixup": tune.uniform(0.0, 1.0), "augment.cutmix": tune.uniform(0.0, 1.5)}
    points = [{"augment.mixup": m, "augment.cutmix": c}
              for m, c in ((0.0, 0.0), (0.8, 0.0), (0.0, 1.0), (0.8, 1.0))]
    return Experiment("mixup", "2.2 mixup / cutmix on against off (TPE tunes the alphas past "
                      "the grid)", space, points)


@experiment
def label_smoothing(num_names: int) -> Experiment:
    space, points = grid(loss__label_smoothing=[0.0, 0.1, 0.2])
    return Experiment("label_smoothing", "2.3 label smoothing 0.0 / 0.1 / 0.2", space, points)


@experiment
def subset(num_names: int) -> Experiment:
    """Top-30 and top-100 against all names; on a data set with fewer names (the 12-name demo)
    the same fractions of it. Labels are ordered by size, so top-k is labels < k."""
    ks = [30, 100] if num_names > 100 else [max(2, num_names // 3), max(3, 2 * num_names // 3)]
    space, points = grid(data__top_k=[*ks, 0])
    return Experiment("subset", "2.4 name subsets: top-k names (0 = all)", space, points)


def get(name: str, num_names: int) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown sweep {name!r}; sweeps: {list(EXPERIMENTS)}")
    return EXPERIMENTS[name](num_names)
