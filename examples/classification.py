"""Classify MNIST digits with a Bayesian MLP: the paper's prior and guide, fit by SVI,
scored by accuracy, NLL and calibration (ECE) under three decision rules.

    python examples/classification.py            # 50k train images, 30 epochs
    python examples/classification.py --quick    # 4,000 images, 8 epochs, < 1 min

The net is the paper's FC-100-100-10 (784 -> 100 -> 100 -> 10, ReLU). Every weight and
bias gets the paper's scale-mixture prior 0.5 N(0, e^-2) + 0.5 N(0, e^-14) (Zhang & Chen
2020, eq. 2), and the guide is the paper's mean-field Normal N(mu, softplus(rho)^2) with
rho starting at ``--rho-init`` (eq. 1). SVI minimises the ELBO per datapoint with one
weight sample per step; the epoch with the best validation accuracy is kept.

A fitted BNN gives several decision rules; the table scores three on the test set:
one weight sample per prediction (repeated, mean and sd over repeats), the mean
probabilities of 10 weight samples (the posterior predictive, eq. 7), and the network
with every weight at its posterior mean.
"""

from __future__ import annotations

import argparse
import functools
import time

import pandas as pd
import torch

from pyro_bnn import (
    BayesianMLP,
    ScaleMixtureNormal,
    ensemble_fn,
    evaluate,
    fit_svi,
    load_mnist,
    make_guide,
    mean_fn,
    single_sample_fn,
)


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,000 train images, 8 epochs")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (quick: 8)")
    p.add_argument("--rho-init", type=float, default=-5.0, help="sigma starts at softplus(this)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (quick: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    epochs = args.epochs or (8 if args.quick else 30)

    # MNIST from data/mnist: 50k train / 10k validation / 10k test, pixels / 126
    data = load_mnist(download=False)
    if args.quick:
        data = data.head(4000, 1000)  # the first 4,000 train and 1,000 val/test images
    data = data.to(args.device)

    # the paper's prior on every weight: pi 0.5, sigma1 e^-1, sigma2 e^-7 (its defaults)
    bnn = BayesianMLP("FC-100-100-10", prior=ScaleMixtureNormal())
    guide = make_guide("softplus-normal", bnn, rho_init=args.rho_init)
    start = time.perf_counter()
    fit = fit_svi(
        bnn,
        guide,
        data,  # trains on data.train, keeps the epoch best on data.val
        optimizer=functools.partial(torch.optim.Adam, lr=args.lr),
        max_epochs=epochs,
        patience=None,
        seed=args.seed,
        device=args.device,
        progress=not args.quick,
    )
    print(
        f"fit {fit.epochs} epochs in {time.perf_counter() - start:.0f} s; kept epoch "
        f"{fit.best_epoch} (validation accuracy {fit.best_val:.4f})"
    )

    torch.manual_seed(args.seed)
    rules = {
        "one weight sample": single_sample_fn(bnn, guide, runs=10),  # (10, N, 10)
        "mean of 10 samples": ensemble_fn(bnn, guide, size=10, runs=10),  # (10, N, 10)
        "posterior mean": mean_fn(bnn, guide),  # (N, 10)
    }
    rows = []
    for rule, predict in rules.items():
        scores = evaluate(predict, data.test.x, data.test.y)
        rows.append(
            {
                "rule": rule,
                "acc": scores["acc"],
                "acc_sd": scores["acc_std"],
                "nll": scores["nll"],
                "ece": scores["ece"],
                "n_test": scores["n"],
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    main()
