"""One typed config for every stage, in one precedence: preset < YAML file < flags < `--set`.

The driver resolves it, writes it to the run folder as config.json and ships it to the workers
as a plain dict; each worker rebuilds it with `Config.from_dict`, so a typo fails loudly there
too. Values from the command line are parsed with their field's type (`--name 2024-06-01` stays
a string); YAML values are checked against the same types.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

METRICS = ("val/top1", "val/balanced_acc")  # what a run and a sweep may select on
RESULTS_ROOT = "results/track2_vit_scratch"
# Names of the registries that validate() checks. The config owns them, so it needs neither
# torch nor the modules that implement them (model/losses.py: CLASS_WEIGHTS has these keys).
CLASS_WEIGHT_SCHEMES = ("none", "inverse", "sqrt", "effective")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class DataConfig:
    # --- index files -> manifest (raysys/data/manifest.py)
    index_dir: str = ""  # folder of index_<name>.json files; the manifest is built from it
    manifest: str = ""  # Parquet manifest, or a `raysys pack` folder; wins over index_dir
    split_by: str = "image"  # "image" | "group": a person-disjoint split needs "group"
    group_by: str = "parent"  # identity group = the image's folder ("parent") | "none"
    group_pattern: str = ""  # regex on the path below the index folder; group 1 = identity
    val_fraction: float = 0.2
    # A held-out test split, person-disjoint like val where the split is by group: never read
    # to choose an epoch, a trial or a recipe; the chosen model is scored on it once (the
    # report's primary endpoint). 0 here (small data keeps its people for val, whose verdicts
    # are selection-free); the GPU presets hold out 0.1, which costs 434k images little.
    test_fraction: float = 0.0
    top_k: int = 0  # keep the K largest names (experiment 2.4: 30, 100); 0 = all
    path_map: tuple[str, ...] = ()  # "OLD=NEW" prefix rewrites for index files from elsewhere
    max_pixels: int = 89_478_485  # PIL's decompression-bomb limit: larger images are refused
    # CSV name,p_female,birth_year: overrides or extends the report's SSA demographics
    demographics: str = ""
    # The report's floors fit on a seeded sample of at most this many train images, each name
    # in proportion (report/floors.py): their cost stops growing with the data set.
    floor_sample: int = 20_000
    # --- decode, crop and batch (raysys/data/decode.py, stream.py)
    img_size: int = 224
    center_crop: float = 1.0  # keep the central fraction of each side first (LFW: face ~0.5)
    # The global batch (all workers together), split evenly over run.workers; ignored when
    # worker_batch is set. lr scales with the global batch (optim.base_lr / optim.base_batch).
    batch_size: int = 256
    worker_batch: int = 0  # > 0: images per worker per step; global = worker_batch x workers
    # Decode actors per Train worker, at most: 96 vCPUs / 8 GPUs on a p4d leave ~10 cores per GPU,
    # and ~300 img/s per core keeps one ViT-B/16 (~3k img/s on an H100) fed.
    actors_per_worker: float = 10.0
    cpus_per_actor: float = 1.0
    # Images per decode call (= per Ray Data block): each block costs a fixed share of
    # scheduling and transfer; per core, 512 measured 1.6x the rate of 64 (RESULTS.md).
    actor_batch_size: int = 512
    prefetch_batches: int = 4
    max_bad_fraction: float = 0.01  # an epoch with more undecodable images stops the run
    # Val in the object store for the run: "decoded" once (uint8 at img_size), or "encoded"
    # (its JPEG bytes, decoded at every evaluation); "auto": decoded up to 1 GiB.
    val_cache: str = "auto"
    # Ray label selector for the decode actors: not on a node labelled raysys-role=head (the
    # cluster YAML labels its CPU head so), so decoded images never cross the head's link.
    decode_selector: tuple[str, ...] = ("raysys-role=!head",)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet statistics
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    arch: str = "vit_base_patch16_224"  # any timm ViT name; built with pretrained=False
    # None keeps the arch's own value; set them to shrink a ViT (the `micro` preset).
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    drop_rate: float = 0.1
    drop_path_rate: float = 0.1


@dataclass
class LossConfig:
    label_smoothing: float = 0.1
    class_weights: str = "inverse"  # one of CLASS_WEIGHT_SCHEMES
    logit_adjust_tau: float = 0.0  # Menon et al. 2021: train on logits + tau * log(prior)


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop area range
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter: float = 0.2  # brightness, contrast and saturation strength
    grayscale: float = 0.1
    erasing: float = 0.25
    mixup: float = 0.0  # mixup alpha; the seed's value when on is 0.8
    cutmix: float = 0.0  # cutmix alpha; the seed's value when on is 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5


@dataclass
class OptimConfig:
    epochs: int = 100
    # lr = base_lr x global batch / base_batch: the seed's rule is 1e-3 per 256 images, DeiT's
    # (known to train ViT-B from scratch) 5e-4 per 512.
    base_lr: float = 1e-3
    base_batch: int = 256
    lr: float | None = None  # set to override the scaled lr
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    max_skipped_steps: int = 50  # fp16: this many overflow-skipped steps in a row = diverged
    compile: bool = False
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.9998 on the full data set

    def resolved_lr(self, global_batch: int) -> float:
        return self.lr if self.lr is not None else self.base_lr * global_batch / self.base_batch


@dataclass
class RunConfig:
    name: str = ""  # run name; empty = <arch>-<timestamp>
    storage: str = RESULTS_ROOT  # results root: a local path, shared path (EFS) or s3:// URI
    out: str = ""  # run folder; empty = <storage>/<name>
    metric: str = "val/top1"  # selects best_model.pth, the best epoch, ASHA and the winner
    workers: int = 1
    gpus: bool = False  # one GPU per worker
    cpus_per_worker: float = 1.0
    max_failures: int = 1  # restarts from the latest checkpoint after a worker or node loss
    # Once the workers run: no batch decoded and no epoch ended for this long, while Ray holds
    # work it cannot place, stops the run with what is pending (0 = wait forever).
    stall_timeout_s: float = 300.0
    stop_after: int = 0  # end this invocation after N epochs, schedule kept (train in chunks)
    # The report's PNGs and attention maps at the end of a run (~7 s on 2 cores): off, a run
    # writes every table, array and summary.md, and `raysys report RUN` draws them later.
    figures: bool = True
    seed: int = 0
    wandb: bool = True  # offline unless a W&B key is configured
    wandb_project: str = "raysys"


@dataclass
class SweepConfig:
    samples: int = 0  # trials; 0 = every grid point once (TPE samples any beyond the grid)
    max_concurrent: int = 4  # trials at once, capped by what the cluster can grow to
    max_nodes: int = 0  # worker nodes the cluster may grow to, where no autoscaler says so
    grace_period: int = 2  # ASHA: epochs before a trial may be stopped
    reduction_factor: float = 2.0  # ASHA: keep the top 1/rf at each rung
    seed: int = 0  # Optuna TPE seed


# Keys older config.json files hold that no longer do anything.
RETIRED = {("data", "shuffle_buffer"),  # replaced by the keyed mix of packed rows (stream.py)
           # Ray's dashboard serves the state API that Train's placement-group cleaner needs:
           # a local Ray always starts it (train/connect.py)
           ("run", "dashboard")}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """A config from its to_dict() form. Keys retired since (RETIRED) are dropped, so the
        config.json of an older run still loads for `raysys report` and the sweep report."""
        d = {section: {k: v for k, v in values.items() if (section, k) not in RETIRED}
             if isinstance(values, dict) else values for section, values in d.items()}
        return apply_overrides(cls(), d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @property
    def global_batch(self) -> int:
        """Images per optimisation step, all workers together."""
        if self.data.worker_batch:
            return self.data.worker_batch * self.run.workers
        return self.data.batch_size

    @property
    def local_batch(self) -> int:
        """Images per step on one worker."""
        return max(1, self.global_batch // max(1, self.run.workers))

    def batch_line(self) -> str:
        """The effective batch and lr, as printed when a run or a sweep starts."""
        o = self.optim
        rule = (f"lr set to {o.lr:.2e}" if o.lr is not None else
                f"lr {o.base_lr:g} x {self.global_batch}/{o.base_batch} = "
                f"{o.resolved_lr(self.global_batch):.2e}")
        return (f"batch {self.run.workers} worker(s) x {self.local_batch} = "
                f"{self.global_batch} global; {rule}")


# --- presets: named override trees, the lowest layer ---------------------------------------

PRESETS: dict[str, dict] = {
    # A ViT small enough for CPU tests: 32 px, patch 4 -> 64 tokens + cls, dim 64, depth 3.
    "micro": {
        "data": {"img_size": 32, "batch_size": 64, "actors_per_worker": 1.0,
                 "cpus_per_actor": 0.5, "actor_batch_size": 64},
        "model": {"arch": "vit_tiny_patch16_224", "patch_size": 4, "embed_dim": 64, "depth": 3,
                  "num_heads": 4, "drop_rate": 0.0, "drop_path_rate": 0.0},
        "optim": {"epochs": 6, "warmup_epochs": 1, "base_lr": 2e-3},
        "run": {"wandb": False},
    },
    # Small real-face data on a CPU (LFW's 20 largest names, ~2.5k train images): a 4-block
    # ViT on 32 px crops of the central half of the frame, where LFW puts the face: it learned
    # faster than 64 px / patch 8 / 6 blocks, and than crops of scale 0.5-1; it underfits, so no
    # drop-path and 120 epochs (~19 min here). Unweighted loss with post-hoc logit adjustment
    # (the report's tau table) beat sqrt class weights on top-1, balanced accuracy and
    # prediction CV. The best epoch is chosen by balanced accuracy: by top-1, the
    # person-disjoint run kept an epoch-3 model that predicts the largest name.
    # benchmarks/lfw_report.md has the runs behind each value.
    "lfw_small": {
        "data": {"img_size": 32, "center_crop": 0.5, "batch_size": 64,
                 "actors_per_worker": 1.0, "cpus_per_actor": 0.5, "actor_batch_size": 128},
        "model": {"arch": "vit_tiny_patch16_224", "patch_size": 4, "embed_dim": 128,
                  "depth": 4, "num_heads": 4, "drop_rate": 0.0, "drop_path_rate": 0.0},
        "loss": {"class_weights": "none", "label_smoothing": 0.1},
        "augment": {"scale": (0.8, 1.0)},
        "optim": {"epochs": 120, "warmup_epochs": 5, "base_lr": 4e-3},  # lr 1e-3 at batch 64
        "run": {"cpus_per_worker": 2.0, "metric": "val/balanced_acc", "wandb": False},
    },
    # The GPU presets: 256 images per GPU (128 for ViT-L), as the cost table in
    # cluster/README.md assumes, and DeiT's lr rule, 5e-4 x global/512 (2e-3 on 8 GPUs). The
    # seed's 1e-3 x global/256 gives 8e-3 there, 4x DeiT's rate, which ViT-B from scratch is
    # not known to survive. A 10% test split: the report's primary endpoint is scored there.
    # torch.compile: on an H200, ViT-B/16 trained 3,200 img/s through the whole path compiled
    # against 2,416 eager (+32%), for ~20 s of compiling per run (benchmarks/RESULTS.md).
    "vit_tiny": {"data": {"worker_batch": 256, "test_fraction": 0.1},
                 "model": {"arch": "vit_tiny_patch16_224"},
                 "optim": {"base_lr": 5e-4, "base_batch": 512, "compile": True}},
    "vit_small": {"data": {"worker_batch": 256, "test_fraction": 0.1},
                  "model": {"arch": "vit_small_patch16_224"},
                  "optim": {"base_lr": 5e-4, "base_batch": 512, "compile": True}},
    "vit_base": {"data": {"worker_batch": 256, "test_fraction": 0.1},
                 "model": {"arch": "vit_base_patch16_224"},
                 "optim": {"base_lr": 5e-4, "base_batch": 512, "compile": True}},
    "vit_large": {"data": {"worker_batch": 128, "test_fraction": 0.1},
                  "model": {"arch": "vit_large_patch16_224"},
                  "optim": {"base_lr": 5e-4, "base_batch": 512, "compile": True}},
}


# --- typed values ---------------------------------------------------------------------------

class ConfigError(ValueError):
    """A setting that cannot work; the message names the key and the fix."""


TRUE, FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def parse_value(raw: str, hint: Any, where: str) -> Any:
    """A command-line string -> the field's type. No YAML: '2024-06-01' stays a string."""
    hint, optional = _unwrap_optional(hint)
    if optional and raw.strip().lower() in ("none", "null", ""):
        return None
    if typing.get_origin(hint) is tuple:
        parts = [p.strip() for p in raw.strip().strip("[]()").split(",") if p.strip()]
        args = typing.get_args(hint)
        types_ = [args[0]] * len(parts) if len(args) == 2 and args[1] is Ellipsis else args
        if len(types_) != len(parts):
            raise ConfigError(f"{where}: expected {len(types_)} comma-separated values, "
                              f"got {raw!r}")
        return tuple(parse_value(p, t, where) for p, t in zip(parts, types_, strict=True))
    try:
        if hint is bool:
            if raw.strip().lower() in TRUE | FALSE:
                return raw.strip().lower() in TRUE
            raise ValueError
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        kind = "true/false" if hint is bool else hint.__name__
        raise ConfigError(f"{where}: expected {kind}, got {raw!r}") from None
    return raw


def coerce(value: Any, hint: Any, where: str) -> Any:
    """A YAML or JSON value -> the field's type, or a ConfigError naming the key."""
    if isinstance(value, str):
        return parse_value(value, hint, where)
    hint, optional = _unwrap_optional(hint)
    if value is None and optional:
        return None
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        types_ = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(types_) != len(value):
            raise ConfigError(f"{where}: expected {len(types_)} values, got {value!r}")
        return tuple(coerce(v, t, where) for v, t in zip(value, types_, strict=True))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, int | float | datetime.date) \
            and not isinstance(value, bool):
        return str(value)  # YAML reads `name: 2024-06-01` as a date
    kind = "true/false" if hint is bool else getattr(hint, "__name__", str(hint))
    hint_quote = " (quote it in YAML)" if hint is str else ""
    raise ConfigError(f"{where}: expected {kind}, got {value!r}{hint_quote}")


def field_type(section: str, key: str) -> Any:
    """The type hint of section.key, or a ConfigError listing the valid keys."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}; sections: {sorted(sections)}")
    hints = typing.get_type_hints(sections[section].default_factory)
    if key == "pretrained":
        raise ConfigError("model.pretrained: refused; raysys trains from scratch")
    if key not in hints:
        raise ConfigError(f"unknown key {section}.{key}; keys: {sorted(hints)}")
    return hints[key]


def apply_overrides(cfg: Config, tree: dict) -> Config:
    """A copy of cfg with a nested {section: {key: value}} applied, each value type-checked."""
    cfg = Config(**{f.name: dataclasses.replace(getattr(cfg, f.name))
                    for f in dataclasses.fields(cfg)})
    for section, values in tree.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r}: expected a mapping of keys")
        for key, value in values.items():
            hint = field_type(section, key)
            setattr(getattr(cfg, section), key, coerce(value, hint, f"{section}.{key}"))
    return cfg


def parse_set(items: list[str]) -> dict:
    """['optim.lr=1e-4', 'data.top_k=30'] -> {'optim': {'lr': 1e-4}, 'data': {'top_k': 30}}."""
    tree: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. optim.lr=5e-4")
        tree.setdefault(section, {})[name] = parse_value(raw, field_type(section, name),
                                                         f"{section}.{name}")
    return tree


def nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'loss.label_smoothing': 0.1} -> {'loss': {'label_smoothing': 0.1}}."""
    tree: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, _, name = key.partition(".")
        tree.setdefault(section, {})[name] = value
    return tree


# --- validation: fail before Ray starts -------------------------------------------------------

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("loss", "class_weights"): CLASS_WEIGHT_SCHEMES,
    ("optim", "precision"): PRECISIONS,
    ("data", "split_by"): ("image", "group"),
    ("data", "group_by"): ("parent", "none"),
    ("data", "val_cache"): ("auto", "decoded", "encoded"),
    ("run", "metric"): METRICS,
}


def validate(cfg: Config) -> Config:
    """Every check names the key and what to do; the first failure raises."""
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(f"{section}.{key}={value!r}: choose one of {list(allowed)}")
    d, m, o, a, r = cfg.data, cfg.model, cfg.optim, cfg.augment, cfg.run
    checks = [
        (d.img_size > 0, "data.img_size must be > 0, e.g. 224"),
        (0 < d.center_crop <= 1, "data.center_crop must be in (0, 1]; 1 keeps the whole image"),
        (0 <= d.val_fraction < 1, "data.val_fraction must be in [0, 1), e.g. 0.2"),
        (0 <= d.test_fraction < 1 and d.val_fraction + d.test_fraction < 1,
         "data.test_fraction must be in [0, 1) and leave train images: data.val_fraction + "
         "data.test_fraction < 1, e.g. 0.2 + 0.1"),
        (d.worker_batch > 0 or d.batch_size % max(1, r.workers) == 0,
         f"data.batch_size={d.batch_size} (the global batch) must split evenly over run.workers="
         f"{r.workers}; or set data.worker_batch, the images per worker"),
        (d.worker_batch >= 0, "data.worker_batch must be >= 0 (0 = data.batch_size / workers)"),
        (cfg.global_batch >= r.workers, f"the global batch ({cfg.global_batch}) must be >= "
                                        f"run.workers={r.workers}"),
        (o.base_batch >= 1, "optim.base_batch must be >= 1, e.g. 256"),
        (d.actors_per_worker > 0, "data.actors_per_worker must be > 0, e.g. 10 on a GPU node"),
        (d.cpus_per_actor > 0, "data.cpus_per_actor must be > 0"),
        (d.actor_batch_size >= 1, "data.actor_batch_size must be >= 1"),
        (d.top_k >= 0, "data.top_k must be >= 0 (0 = all names)"),
        (d.floor_sample >= 100, "data.floor_sample must be >= 100, e.g. 20000"),
        (0 <= d.max_bad_fraction <= 1, "data.max_bad_fraction must be in [0, 1], e.g. 0.01"),
        (d.split_by != "group" or d.group_by != "none" or bool(d.group_pattern),
         "data.split_by=group needs data.group_by=parent or a data.group_pattern"),
        (all("=" in p and p.partition("=")[0] for p in d.path_map),
         "data.path_map entries must be OLD=NEW, e.g. /mnt/old=/data/faces"),
        (0 < a.scale[0] <= a.scale[1] <= 1, "augment.scale must satisfy 0 < lo <= hi <= 1"),
        (0 < a.ratio[0] <= a.ratio[1], "augment.ratio must satisfy 0 < lo <= hi"),
        (a.mixup >= 0 and a.cutmix >= 0, "augment.mixup and augment.cutmix must be >= 0 "
                                         "(0 = off; the seed uses 0.8 and 1.0)"),
        (all(0 <= p <= 1 for p in (a.hflip, a.grayscale, a.erasing, a.mix_prob,
                                   a.switch_prob)),
         "augment probabilities (hflip, grayscale, erasing, mix_prob, switch_prob) must be "
         "in [0, 1]"),
        (0 <= a.jitter < 1, "augment.jitter must be in [0, 1)"),
        (a.mixup + a.cutmix == 0 or cfg.local_batch % 2 == 0,
         f"mixup/cutmix pair samples within a batch: the per-worker batch "
         f"({cfg.local_batch}) must be even"),
        (0 <= cfg.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1), e.g. 0.1"),
        (cfg.loss.logit_adjust_tau >= 0, "loss.logit_adjust_tau must be >= 0"),
        (cfg.loss.logit_adjust_tau == 0 or cfg.loss.class_weights == "none",
         f"loss.logit_adjust_tau={cfg.loss.logit_adjust_tau} with loss.class_weights="
         f"{cfg.loss.class_weights!r} corrects for the class prior twice: both reweight "
         "towards rare names. Set loss.class_weights=none to use logit adjustment, or "
         "loss.logit_adjust_tau=0 to keep the weights"),
        (o.epochs >= 1, "optim.epochs must be >= 1"),
        (o.lr is None or o.lr > 0, "optim.lr must be > 0 (or none for base_lr x batch/256)"),
        (o.base_lr > 0, "optim.base_lr must be > 0, e.g. 1e-3"),
        (0 <= o.min_lr, "optim.min_lr must be >= 0"),
        (o.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0 (a warmup longer than the "
                               "run is cut to the run)"),
        (o.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (o.grad_clip > 0, "optim.grad_clip must be > 0, e.g. 1.0"),
        (0 <= o.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
        (o.max_skipped_steps >= 1, "optim.max_skipped_steps must be >= 1"),
        (r.workers >= 1, "run.workers must be >= 1"),
        (r.cpus_per_worker > 0, "run.cpus_per_worker must be > 0"),
        (r.max_failures >= 0, "run.max_failures must be >= 0"),
        (r.stall_timeout_s >= 0, "run.stall_timeout_s must be >= 0 (0 = wait forever)"),
        (r.stop_after >= 0, "run.stop_after must be >= 0 (0 = run every epoch)"),
        (m.patch_size is None or d.img_size % m.patch_size == 0,
         f"data.img_size={d.img_size} must be a multiple of model.patch_size={m.patch_size}"),
        (m.embed_dim is None or m.num_heads is None or m.embed_dim % m.num_heads == 0,
         "model.embed_dim must be a multiple of model.num_heads"),
        (0 <= m.drop_rate < 1 and 0 <= m.drop_path_rate < 1,
         "model.drop_rate and model.drop_path_rate must be in [0, 1)"),
        (cfg.sweep.max_concurrent >= 1, "sweep.max_concurrent must be >= 1"),
        (cfg.sweep.grace_period >= 1, "sweep.grace_period must be >= 1 epoch"),
        (cfg.sweep.reduction_factor > 1, "sweep.reduction_factor must be > 1, e.g. 2"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if m.patch_size is None and "patch" in m.arch:
        patch = int(m.arch.split("patch")[1].split("_")[0])
        if d.img_size % patch:
            raise ConfigError(f"data.img_size={d.img_size} must be a multiple of the patch size "
                              f"{patch} of {m.arch}")
    if not m.arch.startswith(("vit_", "deit", "eva")):
        raise ConfigError(f"model.arch={m.arch!r}: expected a timm ViT, e.g. "
                          "vit_base_patch16_224")
    return cfg


# --- the one precedence -----------------------------------------------------------------------

def load_config(preset: str = "vit_base", yaml_path: str | Path | None = None,
                flags: dict | None = None, sets: list[str] | None = None,
                defaults: dict | None = None) -> Config:
    """preset < defaults (e.g. an experiment's fixed settings) < YAML file < flags < --set."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    cfg = apply_overrides(Config(), PRESETS[preset])
    cfg = apply_overrides(cfg, defaults or {})
    if yaml_path:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"--config {path}: not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"--config {path}: expected a mapping of sections")
        cfg = apply_overrides(cfg, tree)
    cfg = apply_overrides(cfg, flags or {})
    cfg = apply_overrides(cfg, parse_set(sets or []))
    return validate(cfg)


def steps_per_epoch(num_train: int, global_batch: int) -> int:
    """Full global batches per epoch (the last partial one is dropped: DDP ranks stay in step)."""
    return max(1, math.floor(num_train / global_batch))
