"""What trains, with no Ray: the ViT (vit.py), its loss (losses.py), batched augmentation on the
device (augment.py), one optimisation step and evaluation (step.py) over collectives that are
no-ops on one process (dist.py), metrics (metrics.py) and resume state (checkpoint.py)."""
