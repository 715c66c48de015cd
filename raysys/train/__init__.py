"""One training run on Ray Train: the driver (run.py) joins Ray (cluster.py) and fits a
TorchTrainer whose workers run loop.py over their data shards (shards.py), writing the run
folder (rundir.py), printing through the ledger (console.py) and logging to W&B (tracking.py)."""
