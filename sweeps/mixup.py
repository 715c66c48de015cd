"""Experiment 2.2: mixup / cutmix on against off. The grid (off, mixup 0.8, cutmix 1.0, both)
runs first, each once; with --samples above 4, Optuna's TPE then tunes both alphas.

With no arguments: the embedded demo data, micro ViT, local Ray.
Production:  python sweeps/mixup.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus --samples 8
"""

from ray import tune

from raysys.tune import SweepSpec, main


def spec(demo: bool) -> SweepSpec:
    space = {"augment.mixup": tune.uniform(0.0, 1.0), "augment.cutmix": tune.uniform(0.0, 1.5)}
    points = [{"augment.mixup": m, "augment.cutmix": c}
              for m, c in ((0.0, 0.0), (0.8, 0.0), (0.0, 1.0), (0.8, 1.0))]
    return SweepSpec("mixup", "2.2 mixup/cutmix", space, points)


if __name__ == "__main__":
    main(spec, __doc__)
