"""Ray Train overhead: the same micro ViT, the same in-memory batches, the same step function
(raysys.model.step.train_one_epoch), run by a bare PyTorch loop and by TorchTrainer with 1 worker,
side by side in one run. Prints steady-state img/s for both and the ratio (target >= 0.95),
and the wall time of each whole run including start-up.

    python benchmarks/train_overhead.py [--steps 60] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from raysys.config import load_config
from raysys.model.step import make_trainee, train_one_epoch
from raysys.train.shards import KeyedDraws

NUM_CLASSES = 12


def make_batches(steps: int, batch: int, size: int) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    collate = KeyedDraws(0, train=True)
    return [collate({"image": rng.integers(0, 256, (batch, 3, size, size), np.uint8),
                     "label": rng.integers(0, NUM_CLASSES, batch),
                     "row": np.arange(batch) + s * batch, "epoch": np.ones(batch, np.int64)})
            for s in range(steps)]


def timed_epochs(loop_config: dict, wrap) -> dict:
    """Two epochs over the batches; the second is the steady-state measurement."""
    torch.set_num_threads(loop_config["threads"])
    torch.manual_seed(0)
    cfg = load_config("micro", sets=loop_config["sets"])
    counts = np.full(NUM_CLASSES, 100.0)
    device = torch.device("cpu")
    t = make_trainee(cfg, counts, device, wrap=wrap, steps_per_epoch=len(loop_config["batches"]))
    train_one_epoch(t, loop_config["batches"], device)  # warm-up: allocator, kernels
    start = time.perf_counter()
    stats = train_one_epoch(t, loop_config["batches"], device)
    return {"img_per_s": stats["images"] / (time.perf_counter() - start),
            "loss": stats["train/loss"]}


def ray_worker(loop_config: dict) -> None:
    import tempfile

    import ray.train
    import ray.train.torch

    result = timed_epochs(loop_config, wrap=ray.train.torch.prepare_model)
    with tempfile.TemporaryDirectory() as d:  # V2 keeps metrics with a checkpoint
        ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(d))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, same for both; 1 leaves the second core to Ray's own "
                   "daemons, as a GPU node leaves CPUs free")
    args = p.parse_args()
    loop_config = {"batches": make_batches(args.steps, args.batch, 32), "threads": args.threads,
                   "sets": ["data.img_size=32", f"data.batch_size={args.batch}"]}

    wall = time.perf_counter()
    bare = timed_epochs(loop_config, wrap=lambda m: m)
    bare_wall = time.perf_counter() - wall

    import tempfile

    import ray
    import ray.train
    import ray.train.torch

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        wall = time.perf_counter()
        result = ray.train.torch.TorchTrainer(
            ray_worker, train_loop_config=loop_config,
            scaling_config=ray.train.ScalingConfig(
                num_workers=1, resources_per_worker={"CPU": args.threads}),
            run_config=ray.train.RunConfig(storage_path=storage, name="overhead"),
        ).fit()
        ray_wall = time.perf_counter() - wall
    ray.shutdown()
    under_ray = result.metrics
    print(f"micro ViT, {args.steps} steps x batch {args.batch} at 32 px, {args.threads} torch "
          f"threads, CPU")
    print(f"{'':28s} {'img/s (steady)':>15s} {'wall s (2 epochs + start)':>26s}")
    print(f"{'bare PyTorch loop':28s} {bare['img_per_s']:15.0f} {bare_wall:26.1f}")
    print(f"{'TorchTrainer, 1 worker':28s} {under_ray['img_per_s']:15.0f} {ray_wall:26.1f}")
    print(f"ratio TorchTrainer / bare: {under_ray['img_per_s'] / bare['img_per_s']:.3f} "
          f"(target >= 0.95); same loss: {abs(bare['loss'] - under_ray['loss']) < 1e-4}")


if __name__ == "__main__":
    main()
