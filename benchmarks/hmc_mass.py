"""What the Laplace mass matrix buys NUTS on FC-10: gradients and seconds per draw with
Pyro's adapted diagonal mass matrix against pyro_bnn.mcmc.laplace's fixed dense one.

The two alternate, one chain each per repeat (seeded alike), in one process; the medians
over repeats are reported. The Laplace fit is timed apart, since every chain of a prior
shares it.

    python benchmarks/hmc_mass.py                     # 5,000 training images, N(0, 1) prior
    python benchmarks/hmc_mass.py --n 50000 --repeats 1 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyro_bnn import BayesianMLP, load_mnist
from pyro_bnn.mcmc import fit_mcmc, laplace
from pyro_bnn.priors import make_prior
from runs.study.machine import describe


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000, help="training images")
    p.add_argument("--prior", default="normal", choices=("normal", "scale-mixture"))
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--max-tree-depth", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_mnist().head(args.n)
    start = time.perf_counter()
    pre = laplace(BayesianMLP("FC-10", prior=make_prior(args.prior)), data)
    laplace_s = time.perf_counter() - start
    runs = {"diag": [], "laplace": []}
    for r in range(args.repeats):
        order = ("diag", "laplace") if r % 2 == 0 else ("laplace", "diag")
        for mass in order:
            bnn = BayesianMLP("FC-10", prior=make_prior(args.prior))
            calls = [0]
            bnn.register_forward_pre_hook(lambda *_, c=calls: c.__setitem__(0, c[0] + 1))
            start = time.perf_counter()
            fit_mcmc(bnn, data, num_samples=args.samples, warmup=args.warmup, num_chains=1,
                     max_tree_depth=args.max_tree_depth, seed=r, progress=False,
                     laplace=pre if mass == "laplace" else None)  # fmt: skip
            iterations = args.warmup + args.samples
            runs[mass].append((calls[0] / iterations, (time.perf_counter() - start) / iterations))
    out = {}
    for mass, values in runs.items():
        out[mass] = {"gradients": statistics.median(v[0] for v in values),
                     "seconds": statistics.median(v[1] for v in values)}  # fmt: skip
    print(
        f"FC-10 NUTS on {args.n} images, {args.prior} prior, {describe()}; per draw "
        f"(warmup included, median of {args.repeats}): diagonal mass "
        f"{out['diag']['gradients']:.0f} gradients, {out['diag']['seconds']:.3f} s; Laplace "
        f"mass {out['laplace']['gradients']:.0f} gradients, {out['laplace']['seconds']:.3f} s "
        f"(the Laplace fit once: {laplace_s:.1f} s)"
    )
    return out


if __name__ == "__main__":
    main()
