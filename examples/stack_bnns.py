"""Many BNNs in one stack: K Bayesian MLPs of one architecture and prior, each with its own
initial sigma, KL weight and seed, trained together by :func:`pyro_bnn.fit_stack`.

    python examples/stack_bnns.py            # 50k train images, 30 epochs
    python examples/stack_bnns.py --quick    # 3,000 images, 6 epochs, < 1 min

A sweep over a BNN's settings trains many small nets that each leave most of a CPU or GPU
idle. ``fit_stack`` stacks their variational parameters into one (K, P) problem: one
fused draw of w = mu + softplus(rho) * eps and of its Monte Carlo KL per step, and the K
forward passes as batched matrix products. Row k still trains as model k would alone:
its own seed, minibatch order, weight noise, early stopping and best epoch.

The stack here is six FC-100-100-10 BNNs with the paper's prior and guide:

- rho_init -30, -5, -3 and -2 (sigma starts at softplus(rho_init), from 1e-13 to 0.13),
  each trained on the ELBO;
- rho_init -3 with sigma held at its initial value (``train_sigma=False``): only the
  means train;
- rho_init -3 with sigma held and no KL term (``kl_weights=0``): a net trained with fixed
  weight noise by the likelihood alone.

The last two are the study's training controls (``runs/study/zoo.py``): they take one part of
BNN training away at a time.

The table gives each model's mean posterior sigma after training, its kept epoch and its
test accuracy with one weight sample and with the mean of 10. The last lines compare the
stack's wall time with one of its models fit alone by Pyro's own ``Trace_ELBO``.
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
    fit_stack,
    fit_svi,
    load_mnist,
    make_guide,
    single_sample_fn,
)

# (name, rho_init, kl_weight, train_sigma)
MODELS = [
    ("ELBO", -30.0, 1.0, True),
    ("ELBO", -5.0, 1.0, True),
    ("ELBO", -3.0, 1.0, True),
    ("ELBO", -2.0, 1.0, True),
    ("sigma held", -3.0, 1.0, False),
    ("noise only", -3.0, 0.0, False),
]


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3,000 train images, 6 epochs")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (quick: 6)")
    p.add_argument("--seed", type=int, default=0, help="every model's seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (quick: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    epochs = args.epochs or (6 if args.quick else 30)
    data = load_mnist(download=False)
    if args.quick:
        data = data.head(3000, 1000)
    data = data.to(args.device)

    def build(rho_init: float):
        bnn = BayesianMLP("FC-100-100-10", prior=ScaleMixtureNormal())
        return bnn, make_guide("softplus-normal", bnn, rho_init=rho_init)

    pairs = [build(rho_init) for _, rho_init, _, _ in MODELS]
    adam = functools.partial(torch.optim.Adam, lr=3e-3)
    start = time.perf_counter()
    results = fit_stack(
        [bnn for bnn, _ in pairs],
        [guide for _, guide in pairs],
        data,
        seeds=[args.seed] * len(MODELS),  # the same seed: the same minibatches for all
        optimizer=adam,
        max_epochs=epochs,
        patience=None,
        kl_weights=[kl for _, _, kl, _ in MODELS],
        train_sigma=[trains for _, _, _, trains in MODELS],
        device=args.device,
        progress=not args.quick,
    )
    stack_s = time.perf_counter() - start

    torch.manual_seed(args.seed)
    rows = []
    for (name, rho_init, kl, trains), (bnn, guide), fit in zip(MODELS, pairs, results):
        x, y = data.test.x, data.test.y
        rows.append(
            {
                "model": name,
                "rho_init": rho_init,
                "kl_weight": kl,
                "train_sigma": trains,
                "sigma_mean": float(guide.scales()["weights"].mean()),
                "kept_epoch": fit.best_epoch,
                "val_acc": fit.best_val,
                "acc_1_sample": evaluate(single_sample_fn(bnn, guide, runs=10), x, y)["acc"],
                "acc_10_samples": evaluate(ensemble_fn(bnn, guide, 10, runs=10), x, y)["acc"],
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4g"))

    # the second model of the stack, alone, through Pyro's own Trace_ELBO
    bnn, guide = build(MODELS[1][1])
    start = time.perf_counter()
    fit_svi(bnn, guide, data, optimizer=adam, max_epochs=epochs, patience=None,
            seed=args.seed, device=args.device, engine="pyro", progress=False)  # fmt: skip
    alone_s = time.perf_counter() - start
    print(f"stack of {len(MODELS)} BNNs: {stack_s:.1f} s for {epochs} epochs")
    print(
        f"one of them alone by Pyro's Trace_ELBO: {alone_s:.1f} s "
        f"({len(MODELS)} one after another: about {len(MODELS) * alone_s:.0f} s)"
    )
    return table


if __name__ == "__main__":
    main()
