"""A sweep of BNN settings on Ray: one task per setting, on a Ray instance started on this
machine or on a cluster, through the study's executor (``runs/study/executors.py``).

    python examples/ray_sweep.py                      # 50k images, 20 epochs, 8 settings
    python examples/ray_sweep.py --quick              # 2,000 images, 3 epochs, 4 settings
    python examples/ray_sweep.py --executor local     # the same sweep without Ray
    RAY_ADDRESS=ray://head:10001 python examples/ray_sweep.py   # on a running cluster

Each job is a plain dict of settings (a prior and the guide's rho_init), so it pickles,
and :func:`train_one`, a module-level function, trains and scores one BNN from it.
``make_executor("ray", workers)`` runs each job as a Ray task of one CPU and one torch
thread; with no cluster address it starts a Ray instance of ``workers`` CPUs here and stops
it at the end. ``--executor local`` runs the same jobs in spawned local processes instead,
and gives the same table: a job's result depends on its settings and seed alone. A job
with ``"device": "cuda"`` (``--device cuda``) asks Ray for 1 / workers of a GPU, so that
``workers`` tasks share one.

Ray needs ``pip install -e ".[ray]"`` (the ``dev`` extra includes it).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time

import pandas as pd
import torch

from pyro_bnn import (
    BayesianMLP,
    ensemble_fn,
    evaluate,
    fit_svi,
    load_mnist,
    make_guide,
    make_prior,
)
from runs.study.executors import make_executor

PRIORS = {
    "scale-mixture": {},  # the paper's: 0.5 N(0, e^-2) + 0.5 N(0, e^-14)
    "normal 0.1": {"scale": 0.1},
}


def train_one(job: dict) -> dict:
    """Fit and score one BNN of the sweep; runs in a worker (one torch thread)."""
    start = time.perf_counter()
    data = load_mnist(download=False).head(job["n_train"], job["n_eval"]).to(job["device"])
    prior_name = "scale-mixture" if job["prior"] == "scale-mixture" else "normal"
    bnn = BayesianMLP("FC-100-100-10", prior=make_prior(prior_name, **PRIORS[job["prior"]]))
    guide = make_guide("softplus-normal", bnn, rho_init=job["rho_init"])
    fit = fit_svi(
        bnn,
        guide,
        data,
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
        max_epochs=job["epochs"],
        patience=None,
        seed=job["seed"],
        device=job["device"],
        progress=False,
    )
    torch.manual_seed(job["seed"])
    scores = evaluate(ensemble_fn(bnn, guide, size=10, runs=5), data.test.x, data.test.y)
    return {
        "val_acc": fit.best_val,
        "test_acc": scores["acc"],
        "test_nll": scores["nll"],
        "sigma_mean": float(guide.scales()["weights"].mean()),
        "job_s": time.perf_counter() - start,
    }


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2,000 images, 3 epochs, 4 settings")
    p.add_argument("--executor", choices=["ray", "local"], default="ray")
    p.add_argument("--workers", type=int, default=2, help="Ray CPUs (tasks at once)")
    p.add_argument("--address", default=None, help="a Ray cluster (default: RAY_ADDRESS)")
    p.add_argument("--device", default="cpu", help="cpu or cuda, for every job")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rhos = [-5.0, -3.0] if args.quick else [-6.0, -5.0, -4.0, -3.0]
    size = {"n_train": 2000, "n_eval": 1000, "epochs": 3} if args.quick else {}
    size = size or {"n_train": None, "n_eval": None, "epochs": 20}
    jobs = [
        {"prior": prior, "rho_init": rho, "seed": args.seed, "device": args.device, **size}
        for prior, rho in itertools.product(PRIORS, rhos)
    ]

    start = time.perf_counter()
    rows = []
    with make_executor(args.executor, args.workers, args.address) as executor:
        for job, result in executor.map_jobs(train_one, jobs):  # in the order they finish
            print(f"done: {job['prior']}, rho_init {job['rho_init']}", flush=True)
            rows.append({"prior": job["prior"], "rho_init": job["rho_init"], **result})
    table = pd.DataFrame(rows).sort_values(["prior", "rho_init"], ignore_index=True)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(
        f"{len(jobs)} jobs on the {args.executor} executor with {args.workers} workers: "
        f"{time.perf_counter() - start:.0f} s"
    )
    return table


if __name__ == "__main__":
    main()
