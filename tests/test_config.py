"""One config path: defaults are the seed's recipe; preset < YAML < flags < --set; flag values
keep their field's type; invalid settings fail before Ray starts, naming the field and the fix;
every preset in the registry trains a step on the CPU."""

import json

import pytest

from raysys.cli import build_parser, config_from
from raysys.config import Config, ConfigError, load_config, steps_per_epoch


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
    # torch.compile trains ViT-B 32% faster on an H200 (benchmarks/RESULTS.md): on in the GPU
    # presets, off where the CPU runs the model (compiling there costs more than it saves).
    assert all(load_config(p).optim.compile for p in ("vit_tiny", "vit_small", "vit_large"))
    assert cfg.optim.compile and not load_config("micro").optim.compile
    assert not load_config("lfw_small").optim.compile


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


def test_steps_per_epoch_drops_the_partial_batch_and_keeps_one():
    assert [steps_per_epoch(n, 64) for n in (0, 63, 64, 127, 128, 1000)] == [1, 1, 1, 1, 2, 15]


def test_config_json_round_trips():
    cfg = load_config("micro", sets=["optim.lr=0.003", "data.path_map=[a=b]"])
    text = cfg.to_json()
    assert json.loads(text) == json.loads(json.dumps(cfg.to_dict())) and text.startswith('{\n "')
    assert Config.from_dict(json.loads(text)) == cfg


def _refused(sets: list[str]) -> str:
    with pytest.raises(ConfigError) as e:
        load_config("micro", sets=sets)
    return str(e.value)


# Every rule of validate() at its boundary: the value just inside is taken, the value just
# outside is refused with exactly the rule's message (micro: 1 worker, batch 64, img 32,
# patch 4, inverse class weights).
BOUNDS = [
    (["data.img_size=4"], ["data.img_size=0"], "data.img_size must be > 0, e.g. 224"),
    (["data.img_size=4"], ["data.img_size=1"],
     "data.img_size=1 must be a multiple of model.patch_size=4"),
    (["data.batch_size=65", "run.workers=2", "data.worker_batch=1"], ["data.img_size=-4"],
     "data.img_size must be > 0, e.g. 224"),
    (["data.split_by=image", "data.group_by=none"], ["data.split_by=group",
                                                     "data.group_by=none"],
     "data.split_by=group needs data.group_by=parent or a data.group_pattern"),
    (["data.path_map=[/a=b=c]"], ["data.path_map=[=a=b]"],
     "data.path_map entries must be OLD=NEW, e.g. /mnt/old=/data/faces"),
    (["data.batch_size=63", "augment.mixup=0", "augment.cutmix=0"],
     ["data.batch_size=63", "augment.mixup=0.5", "augment.cutmix=0.5"],
     "mixup/cutmix pair samples within a batch: the per-worker batch (63) must be even"),
    (["model.embed_dim=none"], ["model.embed_dim=66"],
     "model.embed_dim must be a multiple of model.num_heads"),
    (["data.center_crop=1"], ["data.center_crop=0"],
     "data.center_crop must be in (0, 1]; 1 keeps the whole image"),
    (["data.center_crop=0.5"], ["data.center_crop=1.01"],
     "data.center_crop must be in (0, 1]; 1 keeps the whole image"),
    (["data.val_fraction=0"], ["data.val_fraction=1"],
     "data.val_fraction must be in [0, 1), e.g. 0.2"),
    (["data.val_fraction=0.5"], ["data.val_fraction=-0.01"],
     "data.val_fraction must be in [0, 1), e.g. 0.2"),
    (["data.batch_size=66", "run.workers=2"], ["data.batch_size=65", "run.workers=2"],
     "data.batch_size=65 (the global batch) must split evenly over run.workers=2; or set "
     "data.worker_batch, the images per worker"),
    (["data.batch_size=65", "run.workers=2", "data.worker_batch=3"],
     ["data.worker_batch=-1"], "data.worker_batch must be >= 0 (0 = data.batch_size / workers)"),
    (["data.batch_size=2", "run.workers=2"], ["data.batch_size=0", "run.workers=2"],
     "the global batch (0) must be >= run.workers=2"),
    (["optim.base_batch=1"], ["optim.base_batch=0"], "optim.base_batch must be >= 1, e.g. 256"),
    (["data.actors_per_worker=0.5"], ["data.actors_per_worker=0"],
     "data.actors_per_worker must be > 0, e.g. 10 on a GPU node"),
    (["data.cpus_per_actor=0.5"], ["data.cpus_per_actor=0"], "data.cpus_per_actor must be > 0"),
    (["data.actor_batch_size=1"], ["data.actor_batch_size=0"],
     "data.actor_batch_size must be >= 1"),
    (["data.top_k=0"], ["data.top_k=-1"], "data.top_k must be >= 0 (0 = all names)"),
    (["data.floor_sample=100"], ["data.floor_sample=99"],
     "data.floor_sample must be >= 100, e.g. 20000"),
    (["data.max_bad_fraction=0"], ["data.max_bad_fraction=-0.01"],
     "data.max_bad_fraction must be in [0, 1], e.g. 0.01"),
    (["data.max_bad_fraction=1"], ["data.max_bad_fraction=1.01"],
     "data.max_bad_fraction must be in [0, 1], e.g. 0.01"),
    (["data.split_by=group", "data.group_by=none", "data.group_pattern=(.*)/"],
     ["data.split_by=group", "data.group_by=none"],
     "data.split_by=group needs data.group_by=parent or a data.group_pattern"),
    (["data.path_map=[a=,/b=/c]"], ["data.path_map=[=b]"],
     "data.path_map entries must be OLD=NEW, e.g. /mnt/old=/data/faces"),
    (["augment.scale=0.5,0.5"], ["augment.scale=0,0.5"],
     "augment.scale must satisfy 0 < lo <= hi <= 1"),
    (["augment.scale=0.1,1"], ["augment.scale=0.5,1.01"],
     "augment.scale must satisfy 0 < lo <= hi <= 1"),
    (["augment.ratio=1,1"], ["augment.ratio=0,1"], "augment.ratio must satisfy 0 < lo <= hi"),
    (["augment.ratio=0.5,2"], ["augment.ratio=2,1"], "augment.ratio must satisfy 0 < lo <= hi"),
    (["augment.mixup=0", "augment.cutmix=0"], ["augment.cutmix=-0.1"],
     "augment.mixup and augment.cutmix must be >= 0 (0 = off; the seed uses 0.8 and 1.0)"),
    *[([f"augment.{p}=0"], [f"augment.{p}=-0.01"], "augment probabilities (hflip, grayscale, "
       "erasing, mix_prob, switch_prob) must be in [0, 1]")
      for p in ("hflip", "grayscale", "erasing", "mix_prob", "switch_prob")],
    *[([f"augment.{p}=1"], [f"augment.{p}=1.01"], "augment probabilities (hflip, grayscale, "
       "erasing, mix_prob, switch_prob) must be in [0, 1]")
      for p in ("hflip", "grayscale", "erasing", "mix_prob", "switch_prob")],
    (["augment.jitter=0"], ["augment.jitter=1"], "augment.jitter must be in [0, 1)"),
    (["augment.jitter=0.5"], ["augment.jitter=-0.01"], "augment.jitter must be in [0, 1)"),
    (["data.batch_size=63"], ["data.batch_size=63", "augment.cutmix=1"],
     "mixup/cutmix pair samples within a batch: the per-worker batch (63) must be even"),
    (["loss.label_smoothing=0"], ["loss.label_smoothing=1"],
     "loss.label_smoothing must be in [0, 1), e.g. 0.1"),
    (["loss.label_smoothing=0.5"], ["loss.label_smoothing=-0.01"],
     "loss.label_smoothing must be in [0, 1), e.g. 0.1"),
    (["loss.class_weights=none", "loss.logit_adjust_tau=0"],
     ["loss.class_weights=none", "loss.logit_adjust_tau=-0.1"],
     "loss.logit_adjust_tau must be >= 0"),
    (["loss.class_weights=none", "loss.logit_adjust_tau=1"], ["loss.logit_adjust_tau=1"],
     "loss.logit_adjust_tau=1.0 with loss.class_weights='inverse' corrects for the class prior "
     "twice: both reweight towards rare names. Set loss.class_weights=none to use logit "
     "adjustment, or loss.logit_adjust_tau=0 to keep the weights"),
    (["optim.epochs=1"], ["optim.epochs=0"], "optim.epochs must be >= 1"),
    (["optim.lr=1e-9"], ["optim.lr=0"], "optim.lr must be > 0 (or none for base_lr x batch/256)"),
    (["optim.base_lr=1e-9"], ["optim.base_lr=0"], "optim.base_lr must be > 0, e.g. 1e-3"),
    (["optim.min_lr=0"], ["optim.min_lr=-1e-9"], "optim.min_lr must be >= 0"),
    (["optim.warmup_epochs=0"], ["optim.warmup_epochs=-1"],
     "optim.warmup_epochs must be >= 0 (a warmup longer than the run is cut to the run)"),
    (["optim.weight_decay=0"], ["optim.weight_decay=-0.01"], "optim.weight_decay must be >= 0"),
    (["optim.grad_clip=1e-9"], ["optim.grad_clip=0"], "optim.grad_clip must be > 0, e.g. 1.0"),
    (["optim.ema_decay=0"], ["optim.ema_decay=1"], "optim.ema_decay must be in [0, 1)"),
    (["optim.ema_decay=0.5"], ["optim.ema_decay=-0.01"], "optim.ema_decay must be in [0, 1)"),
    (["optim.max_skipped_steps=1"], ["optim.max_skipped_steps=0"],
     "optim.max_skipped_steps must be >= 1"),
    (["run.workers=1"], ["run.workers=0"], "run.workers must be >= 1"),
    (["run.cpus_per_worker=0.5"], ["run.cpus_per_worker=0"], "run.cpus_per_worker must be > 0"),
    (["run.max_failures=0"], ["run.max_failures=-1"], "run.max_failures must be >= 0"),
    (["run.stall_timeout_s=0"], ["run.stall_timeout_s=-1"],
     "run.stall_timeout_s must be >= 0 (0 = wait forever)"),
    (["run.stop_after=0"], ["run.stop_after=-1"], "run.stop_after must be >= 0 (0 = run every "
                                                   "epoch)"),
    (["data.img_size=36"], ["data.img_size=34"],
     "data.img_size=34 must be a multiple of model.patch_size=4"),
    (["model.embed_dim=68"], ["model.embed_dim=66"],
     "model.embed_dim must be a multiple of model.num_heads"),
    (["model.drop_rate=0", "model.drop_path_rate=0"], ["model.drop_rate=1"],
     "model.drop_rate and model.drop_path_rate must be in [0, 1)"),
    (["model.drop_rate=0.5"], ["model.drop_path_rate=-0.01"],
     "model.drop_rate and model.drop_path_rate must be in [0, 1)"),
    (["model.drop_path_rate=0.5"], ["model.drop_rate=-0.01"],
     "model.drop_rate and model.drop_path_rate must be in [0, 1)"),
    (["model.drop_rate=0.5"], ["model.drop_path_rate=1"],
     "model.drop_rate and model.drop_path_rate must be in [0, 1)"),
    (["sweep.max_concurrent=1"], ["sweep.max_concurrent=0"], "sweep.max_concurrent must be >= 1"),
    (["sweep.grace_period=1"], ["sweep.grace_period=0"], "sweep.grace_period must be >= 1 epoch"),
    (["sweep.reduction_factor=1.01"], ["sweep.reduction_factor=1"],
     "sweep.reduction_factor must be > 1, e.g. 2"),
    (["optim.precision=bf16"], ["optim.precision=fp64"],
     "optim.precision='fp64': choose one of ['auto', 'bf16', 'fp16', 'fp32']"),
    (["model.arch=deit_tiny_patch16_224", "model.patch_size=none"],
     ["model.arch=vit_tiny_patch16_224", "model.patch_size=none", "data.img_size=40"],
     "data.img_size=40 must be a multiple of the patch size 16 of vit_tiny_patch16_224"),
    (["model.arch=eva02_tiny_patch14_224", "model.patch_size=none", "data.img_size=28"],
     ["model.arch=resnet50"],
     "model.arch='resnet50': expected a timm ViT, e.g. vit_base_patch16_224"),
]


@pytest.mark.parametrize("ok, bad, message", BOUNDS)
def test_every_rule_at_its_boundary(ok, bad, message):
    load_config("micro", sets=ok)
    assert _refused(bad) == message


def _error(fn, *args) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return str(e.value)


def test_parse_value_for_every_kind_of_field():
    from raysys.config import parse_value as p

    assert [p(raw, float | None, "x") for raw in ("none", " NULL ", "", "0.5")] == [
        None, None, None, 0.5]
    assert p("[a=b, c=d]", tuple[str, ...], "x") == ("a=b", "c=d")
    assert p("(x)", tuple[str, ...], "x") == ("x",) and p("a,,b", tuple[str, ...], "x") == (
        "a", "b")
    assert p("", tuple[str, ...], "x") == () and p("0.1, 0.9", tuple[float, float], "x") == (
        0.1, 0.9)
    assert _error(p, "0.1", tuple[float, float], "x") == (
        "x: expected 2 comma-separated values, got '0.1'")
    assert [p(raw, bool, "x") for raw in ("True", " yes ", "on", "1", "false", "No", "off",
                                          "0")] == [True] * 4 + [False] * 4
    assert _error(p, "maybe", bool, "x") == "x: expected true/false, got 'maybe'"
    assert p("3", int, "x") == 3 and _error(p, "3.5", int, "x") == "x: expected int, got '3.5'"
    assert p("1e-4", float, "x") == 1e-4
    assert _error(p, "abc", float, "x") == "x: expected float, got 'abc'"
    assert p("2024-06-01", str, "x") == "2024-06-01"


def test_coerce_yaml_values_to_the_field_type():
    import datetime

    from raysys.config import coerce as c

    assert c("3", int, "x") == 3 and c(None, int | None, "x") is None
    assert _error(c, None, int, "x") == "x: expected int, got None"
    got = c([0.1, 1], tuple[float, float], "x")
    assert got == (0.1, 1.0) and isinstance(got[1], float)
    assert c((1, 2, 3), tuple[str, ...], "x") == ("1", "2", "3")
    assert _error(c, 5, tuple[str, ...], "x") == "x: expected a list, got 5"
    assert _error(c, [1], tuple[float, float], "x") == "x: expected 2 values, got [1]"
    assert c(True, bool, "x") is True and c(False, bool, "x") is False
    assert _error(c, 1, bool, "x") == "x: expected true/false, got 1"
    assert _error(c, True, int, "x") == "x: expected int, got True"
    assert _error(c, True, float, "x") == "x: expected float, got True"
    assert c(2, float, "x") == 2.0 and isinstance(c(2, float, "x"), float)
    assert c(2, int, "x") == 2 and _error(c, 2.5, int, "x") == "x: expected int, got 2.5"
    assert c(5, str, "x") == "5" and c(2.5, str, "x") == "2.5"
    assert c(datetime.date(2024, 6, 1), str, "x") == "2024-06-01"
    assert _error(c, True, str, "x") == "x: expected str, got True (quote it in YAML)"
    assert _error(c, [1], str, "x") == "x: expected str, got [1] (quote it in YAML)"


def test_set_and_nest_split_at_the_first_dot():
    from raysys.config import nest, parse_set

    assert nest({"loss.label_smoothing": 0.1, "a.b.c": 1}) == {
        "loss": {"label_smoothing": 0.1}, "a": {"b.c": 1}}
    assert _error(parse_set, ["optim.lr.x=1"]).startswith("unknown key optim.lr.x; keys: [")
    assert _error(parse_set, ["optim.lr=x"]) == "optim.lr: expected float, got 'x'"
    from raysys.config import parse_value

    assert _error(parse_value, "a,b", tuple[float, float], "augment.scale") == (
        "augment.scale: expected float, got 'a'")
    from raysys.config import coerce

    assert _error(coerce, ["a", 1.0], tuple[float, float], "augment.scale") == (
        "augment.scale: expected float, got 'a'")
    assert _error(coerce, "x", int, "run.workers") == "run.workers: expected int, got 'x'"


def test_config_file_and_section_errors_are_exact(tmp_path):
    from raysys.config import apply_overrides

    assert _error(load_config, "micro", tmp_path / "none.yaml") == (
        f"--config {tmp_path / 'none.yaml'}: no such file")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert _error(load_config, "micro", tmp_path / "list.yaml") == (
        f"--config {tmp_path / 'list.yaml'}: expected a mapping of sections")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    assert _error(load_config, "micro", tmp_path / "bad.yaml").startswith(
        f"--config {tmp_path / 'bad.yaml'}: not valid YAML: ")
    assert _error(apply_overrides, Config(), {"optim": 3}) == (
        "config section 'optim': expected a mapping of keys")
    assert _error(load_config, "micro", None, None, ["model.pretrained=true"]) == (
        "model.pretrained: refused; raysys trains from scratch")
    cfg = load_config("micro", sets=["optim.lr=0.01"])
    assert cfg.optim.resolved_lr(512) == 0.01
    assert cfg.batch_line() == "batch 1 worker(s) x 64 = 64 global; lr set to 1.00e-02"
    assert load_config("micro").optim.resolved_lr(512) == pytest.approx(
        load_config("micro").optim.base_lr * 2)
    assert Config.from_dict({"optim": {"lr": 0.5}}).optim.lr == 0.5
    assert _error(Config.from_dict, {"optim": 3}) == (
        "config section 'optim': expected a mapping of keys")
