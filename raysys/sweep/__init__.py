"""The four experiments (experiments.py) run by Ray Tune + Optuna + ASHA (runner.py), each trial a
training run; the sweep report (report.py) reads the trials' run folders."""
