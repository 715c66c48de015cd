"""Experiment 2.4: top-30 and top-100 names against all names (labels are ordered by
size, so top-k is labels < k; the 12-name demo compares top-4, top-8 and all).

With no arguments: the embedded demo data, micro ViT, local Ray (or the running cluster).
Production:  python sweeps/subset.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus --storage /mnt/efs/raysys
Same as `raysys sweep subset ...`; `raysys sweep --help` lists every flag.
"""

import sys

from raysys.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "subset", *sys.argv[1:]]))
