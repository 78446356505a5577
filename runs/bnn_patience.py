"""Does longer training close the gap to the paper's Table 1? Early-stopping patience 5
(the paper's) against a longer patience, for a few rho_init values.

    python runs/bnn_patience.py                        # rho_init -30 -3 -1.5, patience 5 vs 20
    python runs/bnn_patience.py --quick                # smoke run on a slice

The patience-5 nets are the ones runs/reproduce.py --profile full trained (same artifacts,
reused); the longer-patience nets train in parallel worker processes. Prints and writes
runs/results/bnn_patience.csv: single-sample test accuracy (mean of --runs samples), the
epochs run and the best validation accuracy.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import paper  # noqa: E402

from pyro_bnn import evaluate, load_mnist, single_sample_fn, train_bnn  # noqa: E402
from pyro_bnn.evaluate import write_table  # noqa: E402


def train(job: dict):
    """Train (or load) one BNN; in a worker process this uses one torch thread."""
    if job.get("worker"):
        torch.set_num_threads(1)
    data = load_mnist().head(job["limit"]) if job["limit"] else load_mnist()
    # patience 5 is fit_svi's default: leaving it out keeps the full profile's config
    extra = {} if job["patience"] == 5 else {"patience": job["patience"]}
    kind = "bnn" if job["patience"] == 5 else f"bnn-patience{job['patience']}"
    return train_bnn(
        job["rho"],
        data,
        root=job["root"],
        kind=kind,
        progress=False,
        max_epochs=job["max_epochs"],
        **extra,
    )


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rho-init", type=float, nargs="+", default=[-30.0, -3.0, -1.5])
    p.add_argument("--patience", type=int, nargs="+", default=[5, 20])
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="1,000 images, 2-3 epochs, temp dirs")
    args = p.parse_args(argv)
    if args.quick:
        args.rho_init, args.patience, args.max_epochs, args.runs = [-3.0], [1, 2], 3, 5
        args.limit = 1000
        args.root = args.results = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
    jobs = [
        {
            "rho": rho,
            "patience": pat,
            "root": args.root,
            "limit": args.limit,
            "max_epochs": args.max_epochs,
        }
        for rho in args.rho_init
        for pat in args.patience
    ]
    if args.workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
            list(pool.map(train, [job | {"worker": True} for job in jobs]))
    data = load_mnist().head(args.limit) if args.limit else load_mnist()
    rows = []
    for job in jobs:
        bnn, guide, meta = train(job)
        test = evaluate(single_sample_fn(bnn, guide, args.runs), data.test.x, data.test.y)
        rows.append(
            {
                "rho_init": job["rho"],
                "patience": job["patience"],
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "best_val_acc_mean10": 100 * meta["best_val_acc"],
                "test_acc": 100 * test["acc"],
                "test_acc_std": 100 * test["acc_std"],
                "paper_test": paper.TABLE1_BNN[job["rho"]][1]
                if job["rho"] in paper.TABLE1_BNN
                else None,
                "train_s": meta["wall_time_s"],
            }
        )
    table = pd.DataFrame(rows)
    write_table(table, Path(args.results) / "bnn_patience", floatfmt=".2f")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return table


if __name__ == "__main__":
    main()
