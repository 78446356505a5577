"""Tell out-of-distribution inputs from MNIST test digits by a BNN's uncertainty:
predictive entropy, its aleatoric and epistemic parts, and the AUROC of each.

    python examples/uncertainty_ood.py            # 50k train images, 30 epochs
    python examples/uncertainty_ood.py --quick    # 4,000 images, 8 epochs, < 1 min

A Bayesian FC-100-100-10 with the paper's prior and guide is fit by SVI, as in
examples/classification.py. Its posterior predictive is S = 20 weight samples' class
probabilities (S, N, C), from which :mod:`pyro_bnn.uncertainty` computes, per input:

- entropy: the predictive entropy H[mean_s p_s], total uncertainty;
- expected_entropy: mean_s H[p_s], the aleatoric part;
- mutual_information: their difference, the epistemic part (BALD): how much the weight
  samples disagree;
- max_prob: 1 - the largest mean class probability.

Two out-of-distribution sets of the same size as the in-distribution test slice: the test
digits rotated by 90 degrees, and uniform noise images. For each measure,
:func:`pyro_bnn.detect` gives the AUROC of telling the out-of-distribution set from the
test digits by that score (0.5: chance, 1.0: perfect). The posterior-mean network, a
deterministic net, is scored beside the BNN; its mutual information is 0 everywhere.
"""

from __future__ import annotations

import argparse
import functools

import pandas as pd
import torch

from pyro_bnn import (
    BayesianMLP,
    ScaleMixtureNormal,
    detect,
    fit_svi,
    load_mnist,
    make_guide,
    mean_fn,
    single_sample_fn,
)
from pyro_bnn.data import X_MAX


def ood_sets(x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Out-of-distribution inputs shaped like x (N, 784): rotated digits and noise."""
    rotated = x.view(-1, 28, 28).rot90(1, dims=(1, 2)).reshape(len(x), -1)
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=g) * X_MAX  # uniform in the pixel box
    return {"rotated 90": rotated, "uniform noise": noise.to(x)}


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,000 train images, 8 epochs")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (quick: 8)")
    p.add_argument("--samples", type=int, default=20, help="weight samples S")
    p.add_argument("--rho-init", type=float, default=-5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (quick: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    epochs = args.epochs or (8 if args.quick else 30)

    data = load_mnist(download=False)
    if args.quick:
        data = data.head(4000, 1000)
    bnn = BayesianMLP("FC-100-100-10", prior=ScaleMixtureNormal())
    guide = make_guide("softplus-normal", bnn, rho_init=args.rho_init)
    fit_svi(
        bnn,
        guide,
        data,
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
        max_epochs=epochs,
        patience=None,
        seed=args.seed,
        progress=not args.quick,
    )

    torch.manual_seed(args.seed)
    x_in = data.test.x  # in distribution: MNIST test digits
    rules = {
        "BNN, S samples": (
            single_sample_fn(bnn, guide, runs=args.samples),  # x -> (S, N, C)
            ["entropy", "expected_entropy", "mutual_information", "max_prob"],
        ),
        "posterior mean": (mean_fn(bnn, guide), ["entropy", "max_prob"]),  # x -> (N, C)
    }
    rows = []
    for rule, (predict, measures) in rules.items():
        for measure in measures:
            row = {"rule": rule, "measure": measure}
            for name, x_out in ood_sets(x_in, args.seed).items():
                found = detect(predict, x_in, x_out, measure=measure)
                row[f"auroc {name}"] = found["auroc"]
                row[f"mean in / {name}"] = f"{found['in_mean']:.3f} / {found['out_mean']:.3f}"
            rows.append(row)
    table = pd.DataFrame(rows)
    print(f"in distribution: {len(x_in)} MNIST test digits; AUROC of flagging each OOD set")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    main()
