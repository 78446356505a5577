"""Attack a BNN properly: white-box, on the decision rule it actually uses (the posterior
predictive), with expectation over transformation (EOT), against the shortcut of
attacking one weight sample.

    python examples/attack_bnn.py            # 50k train images, 30 epochs, 500 test images
    python examples/attack_bnn.py --quick    # 4,000 images, 8 epochs, 100 test images, < 1 min

A Bayesian FC-100-100-10 with the paper's prior and guide is fit by SVI. Its decision
rule is the posterior predictive: the mean class probabilities of 10 fresh weight samples
per prediction, so every call of the rule is random. Every attack below has the same L2
budget ``--eps`` (on the /126 pixel scale of :func:`pyro_bnn.load_mnist`), and every
perturbation is judged the same way: the rule's accuracy on x + r over ``--passes`` fresh
calls.

- clean: no perturbation.
- PGD on one weight sample: draw one weight vector, attack that deterministic net, and
  hand its perturbation to the rule. The shortcut: it attacks a net that is never used.
- PGD on the posterior mean: the same with every weight at its mean.
- PGD + EOT on the rule: each PGD step averages the gradient of ``--eot`` fresh calls of
  the rule (Athalye et al. 2018), the loss taken on its log mean probability.
- APGD-CE + EOT on the rule: APGD (Croce & Hein 2020, from torchattacks) on the same rule.
- worst case: per example, the stronger of the two white-box attacks, judged again on
  fresh calls.

The white-box attacks, not the transferred ones, measure the rule's robustness.
"""

from __future__ import annotations

import argparse
import functools

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
    posterior_mean,
    sample_weights,
    sampler,
)
from pyro_bnn.attacks import eot_model, pgd_attack
from pyro_bnn.attacks.apgd import apgd_attack, worst_case


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,000 train images, 100 attacked")
    p.add_argument("--epochs", type=int, default=None, help="default 30 (quick: 8)")
    p.add_argument("--n", type=int, default=None, help="test images attacked (quick: 100)")
    p.add_argument("--eps", type=float, default=1.0, help="L2 budget on the /126 scale")
    p.add_argument("--ensemble", type=int, default=10, help="weight samples per prediction")
    p.add_argument("--steps", type=int, default=None, help="attack steps (quick: 20)")
    p.add_argument("--eot", type=int, default=None, help="rule calls per step (quick: 4)")
    p.add_argument("--passes", type=int, default=None, help="fresh calls per verdict")
    p.add_argument("--rho-init", type=float, default=-3.0, help="more weight noise: -2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (quick: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    epochs = args.epochs or (8 if args.quick else 30)
    n = args.n or (100 if args.quick else 500)
    steps = args.steps or (20 if args.quick else 100)
    eot = args.eot or (4 if args.quick else 10)
    passes = args.passes or (8 if args.quick else 32)

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
    x, y = data.test.x[:n], data.test.y[:n]  # (n, 784) on the /126 scale, (n,)

    # the decision rule: one call = one fresh posterior predictive of `ensemble` samples,
    # as log mean probabilities (1, N, C), valid logits that never underflow
    rule = eot_model(sampler(bnn, guide, ensemble=args.ensemble, log=True), 1)

    def judged(r: torch.Tensor) -> float:
        """The rule's accuracy on x + r over `passes` fresh calls."""
        predict = ensemble_fn(bnn, guide, size=args.ensemble, runs=passes)
        return evaluate(predict, x + r, y)["acc"]

    pgd = functools.partial(pgd_attack, x=x, y=y, eps=args.eps, steps=steps, progress=False)
    one = sample_weights(bnn, guide, 1)  # (1, P): one draw of every weight
    mean = posterior_mean(bnn, guide)[None]  # (1, P)
    runs = {
        "clean": torch.zeros_like(x),
        "PGD on one weight sample": pgd(lambda v: bnn.apply(v, one)[0], passes=1).r,
        "PGD on the posterior mean": pgd(lambda v: bnn.apply(v, mean)[0], passes=1).r,
    }
    white_box = {
        "PGD + EOT on the rule": pgd(rule, eot=eot, passes=passes),
        "APGD-CE + EOT on the rule": apgd_attack(
            rule, x, y, args.eps, norm="L2", loss="ce", steps=steps, eot=eot, passes=passes
        ),
    }
    runs |= {name: result.r for name, result in white_box.items()}
    runs["worst case of the white-box attacks"] = worst_case(list(white_box.values())).r
    rows = [
        {"attack": name, "white_box": name in white_box or name.startswith("worst"),
         "robust_acc": judged(r), "mean_l2": float(r.norm(dim=1).mean())}
        for name, r in runs.items()
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    print(
        f"posterior predictive of {args.ensemble} weight samples, {n} MNIST test images, "
        f"L2 eps {args.eps} (/126 scale), {steps} steps, EOT {eot}, {passes} passes"
    )
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    main()
