"""Experiment 2.3: label smoothing 0.0 / 0.1 / 0.2, each run exactly once, with the rest
of the seed's recipe and ASHA early stopping.

With no arguments: the embedded demo data, micro ViT, local Ray (or the running cluster).
Production:  python sweeps/label_smoothing.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus --storage /mnt/efs/raysys
Same as `raysys sweep label_smoothing ...`; `raysys sweep --help` lists every flag.
"""

import sys

from raysys.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "label_smoothing", *sys.argv[1:]]))
