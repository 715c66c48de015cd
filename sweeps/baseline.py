"""Experiment 2.1: one run of the seed's recipe on all names: class-weighted (inverse) loss,
label smoothing 0.1, AdamW with warmup + cosine, drop-path 0.1, no mixup.

With no arguments: the embedded demo data, micro ViT, local Ray.
Production:  python sweeps/baseline.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus
"""

from raysys.tune import SweepSpec, grid, main


def spec(demo: bool) -> SweepSpec:
    space, points = grid(loss__class_weights=["inverse"])
    return SweepSpec("baseline", "2.1 baseline", space, points)


if __name__ == "__main__":
    main(spec, __doc__)
