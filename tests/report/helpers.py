"""Hand-made history entries with every key a report reads, for tests without a run."""


def entry(epoch=1, k=12, **over) -> dict:
    base = {"epoch": epoch, "train/loss": 2.0, "train/acc": 0.3, "val/loss": 2.1,
            "val/top1": 0.3, "val/top5": 0.7, "val/balanced_acc": 0.25, "val/macro_f1": 0.2,
            "val/pred_cv": 1.0, "val/true_cv": 0.5, "val/rel_pred_cv": 0.6,
            "val/names_present": k, "val/images": 100, "chance/uniform": 1 / k,
            "chance/majority": 0.2, "chance/prior_match": 0.1, "train/lr": 1e-3,
            "train/img_per_s": 100.0, "data/wait_frac": 0.1, "time/epoch_s": 1.0,
            "gpu/peak_mem_gb": 0.0, "data/bad_images": 0, "diverged": False,
            "data/num_classes": k,
            "posthoc_tau0.5/top1": 0.28, "posthoc_tau0.5/balanced_acc": 0.3,
            "posthoc_tau0.5/rel_pred_cv": 0.25}
    return base | over
