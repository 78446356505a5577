"""Does longer training close the gap to the paper's Table 1? Early-stopping patience 5
(the paper's) against a longer patience, for a few rho_init values.

    python runs/bnn_patience.py                        # rho_init -30 -3 -1.5, patience 5 vs 20
    python runs/bnn_patience.py --quick                # smoke run on a slice

The patience-5 nets are the ones runs/reproduce.py --profile full trained (same config,
so the same artifacts, reused); the longer-patience nets train in parallel worker
processes. Prints and writes runs/results/bnn_patience.csv: single-sample test accuracy
(mean of --runs samples), the epochs run and the best validation accuracy.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyro
import torch

from pyro_bnn.data import load_mnist
from pyro_bnn.evaluate import evaluate, write_table
from pyro_bnn.predict import single_sample_fn
from runs import paper
from runs.args import Parser, positive_int
from runs.config import BNN
from runs.zoo import train_bnn

HERE = Path(__file__).resolve().parent


def train(job: dict):
    """Train (or load) one BNN; in a worker process this uses one torch thread."""
    if job.get("worker"):
        torch.set_num_threads(1)
    data = load_mnist() if job["limit"] is None else load_mnist().head(job["limit"])
    settings = replace(BNN, max_epochs=job["max_epochs"], patience=job["patience"])
    return train_bnn(job["rho"], data, train=settings, root=job["root"], progress=False)


def main(argv: list[str] | None = None) -> int:
    """Train (or load) each rho_init x patience BNN; print and write the table."""
    rhos = [paper.RHO_INITS[0], paper.TABLE3_RHO_INIT, paper.RHO_INITS[-1]]
    p = Parser(prog="runs/bnn_patience.py", description=__doc__.splitlines()[0])
    p.add_argument("--rho-init", type=float, nargs="+", default=rhos)
    p.add_argument("--patience", type=positive_int, nargs="+", default=[BNN.patience, 20])
    p.add_argument("--max-epochs", type=positive_int, default=BNN.max_epochs)
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--runs", type=positive_int, default=paper.SINGLE_SAMPLE_RUNS)
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true", help="1,000 images, 2-3 epochs, temp dirs")
    args = p.parse_args(argv)
    if args.quick:
        args.rho_init, args.patience, args.max_epochs, args.runs = rhos[1:2], [1, 2], 3, 5
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
    data = load_mnist() if args.limit is None else load_mnist().head(args.limit)
    rows = []
    for job in jobs:
        bnn, guide, meta = train(job)
        pyro.set_rng_seed(0)  # the same weight samples on every rerun
        test = evaluate(single_sample_fn(bnn, guide, args.runs), data.test.x, data.test.y)
        rows.append(
            {
                "rho_init": job["rho"],
                "patience": job["patience"],
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "best_val_acc_mean10": 100 * meta["best_val"],
                "test_acc": 100 * test["acc"],
                "test_acc_std": 100 * test["acc_std"],
                "paper_test": paper.TABLE1_BNN.get(job["rho"], (None, None))[1],
                "train_s": meta["wall_time_s"],
            }
        )
    table = pd.DataFrame(rows)
    write_table(table, Path(args.results) / "bnn_patience", floatfmt=".2f")
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
