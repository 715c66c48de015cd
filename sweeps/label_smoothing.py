"""Experiment 2.3: label smoothing alpha in {0.0, 0.1, 0.2}, each evaluated exactly once, with
the rest of the seed's recipe (class-weighted loss, no mixup) and ASHA early stopping.

With no arguments: the embedded demo data, micro ViT, local Ray (a few minutes on 2 cores).
Production:  python sweeps/label_smoothing.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus
"""

from raysys.tune import SweepSpec, grid, main


def spec(demo: bool) -> SweepSpec:
    space, points = grid(loss__label_smoothing=[0.0, 0.1, 0.2])
    return SweepSpec("label_smoothing", "2.3 label smoothing", space, points)


if __name__ == "__main__":
    main(spec, __doc__)
