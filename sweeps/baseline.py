"""Experiment 2.1: the seed's recipe on all names, class-weighted (inverse) loss, label
smoothing 0.1, AdamW with warmup + cosine, drop-path 0.1, no mixup; one run.

With no arguments: the embedded demo data, micro ViT, local Ray (or the running cluster).
Production:  python sweeps/baseline.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus --storage /mnt/efs/raysys
Same as `raysys sweep baseline ...`; `raysys sweep --help` lists every flag.
"""

import sys

from raysys.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "baseline", *sys.argv[1:]]))
