"""One typed config for every stage: preset -> YAML -> `--set section.key=value`, validated early.

The driver resolves it, writes it to the run folder as config.json, and ships it to the workers
as a plain dict; each worker rebuilds it with `Config.from_dict`, so a typo fails loudly there too.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    manifest: str = ""  # Parquet manifest, or a `raysys pack` folder of JPEG-bytes shards
    index_dir: str = ""  # when set without a manifest, the manifest is built from it first
    split_by: str = "image"  # "image" | "group": a person-disjoint split needs "group"
    top_k: int = 0  # keep the K largest names (experiment 2.4: 30, 100); 0 = all
    img_size: int = 224
    batch_size: int = 256  # global: divided over the workers
    num_actors: int = 4  # Ray Data preprocessing actor pool size, per dataset
    cpus_per_actor: float = 1.0
    actor_batch_size: int = 64  # images per map_batches call in one actor
    prefetch_batches: int = 4
    shuffle_buffer: int = 0  # local shuffle buffer (rows) on top of the per-epoch shuffle
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
    class_weights: str = "inverse"  # none | inverse | sqrt | effective (beta 0.999)
    logit_adjust_tau: float = 0.0  # Menon et al. 2021: train on logits + tau * log(prior)


@dataclass
class AugmentConfig:
    scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop area range
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
    base_lr: float = 1e-3  # per 256 images: lr = base_lr * global_batch / 256
    lr: float | None = None  # set to override the scaled lr
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.9998 on the full data set

    def resolved_lr(self, global_batch: int) -> float:
        return self.lr if self.lr is not None else self.base_lr * global_batch / 256


@dataclass
class RunConfig:
    name: str = ""  # run folder name; empty = derived from the preset and a timestamp
    out: str = ""  # run folder; empty = results/track2_vit_scratch/<name>
    workers: int = 1
    gpus: bool = False  # one GPU per worker
    cpus_per_worker: float = 1.0
    max_failures: int = 0
    stop_after: int = 0  # end this invocation after N epochs, schedule kept (train in chunks)
    seed: int = 0
    wandb: bool = True  # offline unless a W&B key is configured
    wandb_project: str = "raysys"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return apply_overrides(cls(), d)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1))


# --- presets ----------------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    # A ViT small enough for CPU tests: 32 px, patch 4 -> 64 tokens + cls, dim 64, depth 3.
    "micro": {
        "data": {"img_size": 32, "batch_size": 64, "num_actors": 1, "cpus_per_actor": 0.5,
                 "actor_batch_size": 64},
        "model": {"arch": "vit_tiny_patch16_224", "patch_size": 4, "embed_dim": 64, "depth": 3,
                  "num_heads": 4, "drop_rate": 0.0, "drop_path_rate": 0.0},
        "optim": {"epochs": 12, "warmup_epochs": 1, "base_lr": 2e-3},
        "run": {"cpus_per_worker": 1.0, "wandb": False},
    },
    "vit_tiny": {"model": {"arch": "vit_tiny_patch16_224"}},
    "vit_small": {"model": {"arch": "vit_small_patch16_224"}},
    "vit_base": {"model": {"arch": "vit_base_patch16_224"}},
    "vit_large": {"model": {"arch": "vit_large_patch16_224"}, "optim": {"base_lr": 5e-4}},
}


# --- overrides and validation -----------------------------------------------------------------

class ConfigError(ValueError):
    pass


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        try:  # YAML reads "1e4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def apply_overrides(cfg: Config, tree: dict) -> Config:
    """Return a copy of cfg with a nested {section: {key: value}} applied, type-checked."""
    cfg = Config(**{f.name: dataclasses.replace(getattr(cfg, f.name))
                    for f in dataclasses.fields(cfg)})
    for section, values in tree.items():
        if section not in {f.name for f in dataclasses.fields(cfg)}:
            raise ConfigError(f"unknown config section {section!r}; sections: "
                              f"{[f.name for f in dataclasses.fields(cfg)]}")
        obj = getattr(cfg, section)
        hints = typing.get_type_hints(type(obj))
        for key, value in (values or {}).items():
            if key == "pretrained":
                raise ConfigError("model.pretrained: refused; raysys trains from scratch")
            if key not in hints:
                raise ConfigError(f"unknown key {section}.{key}; keys: {sorted(hints)}")
            setattr(obj, key, _coerce(value, hints[key], f"{section}.{key}"))
    return cfg


def parse_set(items: list[str]) -> dict:
    """['optim.lr=1e-4', 'data.top_k=30'] -> {'optim': {'lr': 1e-4}, 'data': {'top_k': 30}}."""
    tree: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. optim.lr=5e-4")
        tree.setdefault(section, {})[name] = yaml.safe_load(raw) if raw else ""
    return tree


CHOICES = {
    ("loss", "class_weights"): ("none", "inverse", "sqrt", "effective"),
    ("optim", "precision"): ("auto", "bf16", "fp16", "fp32"),
    ("data", "split_by"): ("image", "group"),
}


def validate(cfg: Config) -> Config:
    """Fail before Ray starts, with the key and the fix in the message."""
    for (section, key), allowed in CHOICES.items():
        if getattr(getattr(cfg, section), key) not in allowed:
            raise ConfigError(f"{section}.{key}={getattr(getattr(cfg, section), key)!r}: "
                              f"choose one of {allowed}")
    checks = [
        (cfg.data.img_size > 0, "data.img_size must be > 0"),
        (cfg.data.batch_size >= cfg.run.workers, "data.batch_size must be >= run.workers"),
        (cfg.data.num_actors >= 1, "data.num_actors must be >= 1"),
        (cfg.data.top_k >= 0, "data.top_k must be >= 0 (0 = all names)"),
        (0 < cfg.augment.scale[0] <= cfg.augment.scale[1] <= 1, "augment.scale: 0 < lo <= hi <= 1"),
        (0 <= cfg.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)"),
        (cfg.optim.epochs >= 1, "optim.epochs must be >= 1"),
        (cfg.optim.lr is None or cfg.optim.lr > 0, "optim.lr must be > 0"),
        (cfg.optim.base_lr > 0, "optim.base_lr must be > 0"),
        (0 <= cfg.optim.ema_decay < 1, "optim.ema_decay must be in [0, 1)"),
        (cfg.run.workers >= 1, "run.workers must be >= 1"),
        (cfg.model.patch_size is None or cfg.data.img_size % cfg.model.patch_size == 0,
         "data.img_size must be a multiple of model.patch_size"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if not cfg.model.arch.startswith(("vit_", "deit", "eva")):
        raise ConfigError(f"model.arch={cfg.model.arch!r}: expected a timm ViT, e.g. "
                          "vit_base_patch16_224")
    return cfg


def load_config(preset: str = "vit_base", yaml_path: str | Path | None = None,
                sets: list[str] | None = None, **direct: dict) -> Config:
    """Preset, then a YAML file, then `--set` overrides, then direct {section: {...}} trees."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    cfg = apply_overrides(Config(), PRESETS[preset])
    if yaml_path:
        cfg = apply_overrides(cfg, yaml.safe_load(Path(yaml_path).read_text()) or {})
    cfg = apply_overrides(cfg, parse_set(sets or []))
    cfg = apply_overrides(cfg, direct)
    return validate(cfg)
