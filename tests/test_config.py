"""One config path: defaults are the seed's recipe; preset < YAML < flags < --set; flag values
keep their field's type; invalid settings fail before Ray starts, naming the field and the fix;
every preset in the registry trains a step on the CPU."""

import pytest

from raysys.cli import build_parser, config_from
from raysys.config import Config, ConfigError, load_config


def test_seed_recipe_is_the_default():
    seed = Config()  # the dataclass defaults: the seed's recipe, its lr rule 1e-3 x B/256
    assert (seed.data.batch_size, seed.global_batch, seed.local_batch) == (256, 256, 256)
    assert seed.optim.resolved_lr(seed.global_batch) == pytest.approx(1e-3)
    assert seed.optim.resolved_lr(2048) == pytest.approx(8e-3)
    cfg = load_config()  # the vit_base preset: 256 per GPU and DeiT's 5e-4 x B/512
    assert cfg.model.arch == "vit_base_patch16_224" and cfg.data.img_size == 224
    assert (cfg.optim.epochs, cfg.optim.warmup_epochs) == (100, 10)
    assert (cfg.optim.weight_decay, cfg.optim.grad_clip) == (0.05, 1.0)
    assert (cfg.loss.label_smoothing, cfg.model.drop_rate, cfg.model.drop_path_rate) == \
        (0.1, 0.1, 0.1)
    assert cfg.augment.mixup == 0 and cfg.augment.cutmix == 0
    assert cfg.run.metric == "val/top1" and cfg.run.max_failures >= 1


def test_precedence_preset_yaml_flags_set(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("optim:\n  epochs: 7\n  lr: 0.5\nloss:\n  label_smoothing: 0.2\n"
                 "run:\n  workers: 3\n")
    cfg = load_config("micro", y, flags={"optim": {"epochs": 8}, "run": {"workers": 8}},
                      sets=["run.workers=2", "data.top_k=30", "run.workers=4"],
                      defaults={"optim": {"epochs": 6, "warmup_epochs": 2}})
    assert cfg.optim.epochs == 8  # flag over YAML over defaults
    assert cfg.optim.lr == 0.5 and cfg.loss.label_smoothing == 0.2  # YAML over preset
    assert cfg.optim.warmup_epochs == 2  # defaults over preset
    assert cfg.run.workers == 4  # --set over flags, the last --set wins
    assert cfg.data.top_k == 30 and cfg.data.img_size == 32  # preset kept where untouched
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", ["2024-06-01", "42", "off", "null", "1e4"])
def test_string_flags_stay_strings(name):
    args = build_parser().parse_args(["train", "--preset", "micro", "--name", name,
                                      "--set", f"run.wandb_project={name}"])
    cfg = config_from(args)
    assert cfg.run.name == name and cfg.run.wandb_project == name


def test_flags_parse_with_their_field_types(tmp_path):
    args = build_parser().parse_args([
        "sweep", "label_smoothing", "--preset", "micro", "--epochs", "3", "--workers", "2",
        "--gpus", "--max-concurrent", "5", "--reduction-factor", "3", "--path-map", "/a=/b",
        "--path-map", "/c=/d", "--set", "augment.scale=0.5,1.0", "--set", "optim.lr=none"])
    cfg = config_from(args)
    assert (cfg.optim.epochs, cfg.run.workers, cfg.run.gpus) == (3, 2, True)
    assert cfg.sweep.max_concurrent == 5 and cfg.sweep.reduction_factor == 3.0
    assert cfg.data.path_map == ("/a=/b", "/c=/d") and cfg.augment.scale == (0.5, 1.0)
    assert cfg.optim.lr is None


def test_yaml_dates_become_strings_and_bools_are_refused(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("run:\n  name: 2024-06-01\n")
    assert load_config("micro", y).run.name == "2024-06-01"
    y.write_text("run:\n  name: off\n")
    with pytest.raises(ConfigError, match="run.name: expected str.*quote it"):
        load_config("micro", y)


# At least ten invalid configs, each failing before Ray starts with the field and the fix.
@pytest.mark.parametrize("sets, message", [
    (["optim.lr=-1"], r"optim.lr must be > 0"),
    (["optim.epoch=3"], r"unknown key optim.epoch; keys: \["),
    (["optimizer.lr=1"], r"unknown config section 'optimizer'; sections"),
    (["loss.class_weights=bogus"], r"loss.class_weights='bogus': choose one of \['none', "),
    (["optim.epochs=three"], r"optim.epochs: expected int, got 'three'"),
    (["run.gpus=maybe"], r"run.gpus: expected true/false"),
    (["loss.label_smoothing=1.5"], r"loss.label_smoothing must be in \[0, 1\)"),
    (["data.img_size=30"], r"data.img_size=30 must be a multiple of model.patch_size=4"),
    (["model.pretrained=true"], r"from scratch"),
    (["optim.lr"], r"expected section.key=value"),
    (["augment.mixup=-0.1"], r"augment.mixup and augment.cutmix must be >= 0"),
    (["run.workers=0"], r"run.workers must be >= 1"),
    (["augment.mixup=0.8", "data.batch_size=66", "run.workers=2"], r"must be even"),
    (["loss.logit_adjust_tau=1.0"], r"corrects for the class prior twice.*class_weights=none"),
    (["run.metric=val/loss"], r"run.metric='val/loss': choose one of"),
    (["data.split_by=group", "data.group_by=none"], r"needs data.group_by=parent"),
    (["augment.scale=0.9,0.5"], r"augment.scale must satisfy 0 < lo <= hi <= 1"),
    (["data.path_map=nonsense"], r"data.path_map entries must be OLD=NEW"),
    (["optim.warmup_epochs=-1"], r"optim.warmup_epochs must be >= 0"),
    (["sweep.reduction_factor=1"], r"sweep.reduction_factor must be > 1"),
])
def test_bad_values_fail_before_ray_starts(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config("micro", sets=sets)


def test_unknown_preset_and_arch_and_patch():
    with pytest.raises(ConfigError, match="unknown preset 'nope'; presets"):
        load_config("nope")
    with pytest.raises(ConfigError, match="expected a timm ViT"):
        load_config("micro", sets=["model.arch=resnet50"])
    with pytest.raises(ConfigError, match="multiple of the patch size 16"):
        load_config("vit_base", sets=["data.img_size=100"])


def test_logit_adjustment_allowed_without_weights():
    cfg = load_config("micro", sets=["loss.class_weights=none", "loss.logit_adjust_tau=1.0"])
    assert cfg.loss.logit_adjust_tau == 1.0




def test_batch_is_named_per_worker_or_global_and_printed():
    eight = load_config("vit_base", sets=["run.workers=8"])
    assert (eight.local_batch, eight.global_batch) == (256, 2048)
    assert eight.optim.resolved_lr(eight.global_batch) == pytest.approx(2e-3)
    assert eight.batch_line() == ("batch 8 worker(s) x 256 = 2048 global; "
                                  "lr 0.0005 x 2048/512 = 2.00e-03")
    split = load_config("micro", sets=["run.workers=2"])  # a global batch, split evenly
    assert (split.global_batch, split.local_batch) == (64, 32)
    with pytest.raises(ConfigError, match="must split evenly over run.workers=3"):
        load_config("micro", sets=["run.workers=3"])
    odd = load_config("micro", sets=["run.workers=3", "data.worker_batch=20"])
    assert (odd.global_batch, odd.local_batch) == (60, 20)


def test_an_older_runs_config_with_a_retired_key_still_loads():
    """config.json of a run made before data.shuffle_buffer was retired: `raysys report` and the
    sweep report must still read it. A key that never existed still fails."""
    old = Config().to_dict()
    old["data"]["shuffle_buffer"] = -1
    assert Config.from_dict(old) == Config()
    old["data"]["shuffle_bufer"] = -1
    with pytest.raises(ConfigError, match="unknown key data.shuffle_bufer"):
        Config.from_dict(old)
