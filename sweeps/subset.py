"""Experiment 2.4: top-30 against top-100 against all names. Every trial reads the one manifest
and keeps labels < k: labels are ordered by name size, so the subset needs no relabelling.

With no arguments: the embedded demo data has only 12 names, so the demo compares top-4,
top-8 and all 12 instead.
Production:  python sweeps/subset.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus
"""

from raysys.tune import SweepSpec, grid, main


def spec(demo: bool) -> SweepSpec:
    space, points = grid(data__top_k=[4, 8, 0] if demo else [30, 100, 0])
    return SweepSpec("subset", "2.4 name subsets (0 = all names)", space, points)


if __name__ == "__main__":
    main(spec, __doc__)
