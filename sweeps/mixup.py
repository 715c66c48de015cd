"""Experiment 2.2: mixup / cutmix on against off. The grid (off, mixup 0.8, cutmix 1.0,
both) runs first, each once; with --samples above 4, Optuna's TPE then tunes both alphas.

With no arguments: the embedded demo data, micro ViT, local Ray (or the running cluster).
Production:  python sweeps/mixup.py --index-dir /mnt/efs/faces/index_files \\
                 --preset vit_base --workers 8 --gpus --storage /mnt/efs/raysys
Same as `raysys sweep mixup ...`; `raysys sweep --help` lists every flag.
"""

import sys

from raysys.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "mixup", *sys.argv[1:]]))
