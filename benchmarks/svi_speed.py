"""SVI step vs plain torch SGD step, and the 100-sample predictive vs 100 plain forwards.

Both sides run in the same process, interleaved, on real MNIST batches; each repeat gives a
ratio and the median ratio is reported, so machine noise mostly cancels.

    python benchmarks/svi_speed.py            # FC-100-100-10, batch 128
    python benchmarks/svi_speed.py --guide normal --repeats 7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

from pyro_bnn import MLP, BayesianMLP, DatapointELBO, load_mnist, make_guide
from pyro_bnn.bnn import init_guide, local_params
from pyro_bnn.predict import predictive_probs, sample_weights


def timed(fn, n: int) -> float:
    """Seconds per call of fn, over n calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="FC-100-100-10")
    p.add_argument("--guide", default="softplus-normal")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=300, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=100, help="predictive weight samples")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_mnist()
    n = len(data.train)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, n, (args.batch_size,), generator=gen) for _ in range(64)]
    it = iter(range(10**9))

    def batch():
        idx = batches[next(it) % len(batches)]
        return data.train.x[idx], data.train.y[idx]

    net = MLP(args.arch)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.95)

    def plain_step():
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()

    pyro.set_rng_seed(0)
    bnn = BayesianMLP(args.arch)
    guide = make_guide(args.guide, bnn, rho_init=-3.0)
    init_guide(bnn, guide)
    svi_opt = torch.optim.SGD(guide.parameters(), lr=1e-3, momentum=0.95)
    elbo = DatapointELBO(n)

    def svi_step():
        x, y = batch()
        svi_opt.zero_grad(set_to_none=True)
        elbo.differentiable_loss(bnn, guide, x, y, num_data=n).backward()
        svi_opt.step()

    x_test = data.test.x
    fixed = [MLP(args.arch) for _ in range(4)]

    @torch.no_grad()
    def plain_forwards():
        for i in range(args.samples):
            fixed[i % 4](x_test).softmax(-1)

    @torch.no_grad()
    def bnn_predictive():
        predictive_probs(bnn, sample_weights(bnn, guide, args.samples), x_test)

    step_ratios, pred_ratios, rows = [], [], []
    with pyro.validation_enabled(False), local_params(bnn, guide):  # as in fit_svi
        timed(plain_step, 50), timed(svi_step, 50)  # warm up
        for _ in range(args.repeats):
            t_plain, t_svi = timed(plain_step, args.steps), timed(svi_step, args.steps)
            t_fwd, t_pred = timed(plain_forwards, 1), timed(bnn_predictive, 1)
            step_ratios.append(t_svi / t_plain)
            pred_ratios.append(t_pred / t_fwd)
            rows.append((t_plain, t_svi, t_fwd, t_pred))
    med = [statistics.median(col) for col in zip(*rows)]
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, pyro {pyro.__version__}"
    )
    print(
        f"{args.arch}, batch {args.batch_size}, guide {args.guide}, "
        f"median of {args.repeats} repeats x {args.steps} steps"
    )
    print(f"plain SGD step      {med[0] * 1e3:8.3f} ms")
    print(
        f"SVI step            {med[1] * 1e3:8.3f} ms   ratio {statistics.median(step_ratios):.2f}x "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in step_ratios)})"
    )
    print(f"{args.samples} plain forwards  {med[2]:8.3f} s  (10,000 test images)")
    ratio = statistics.median(pred_ratios)
    print(
        f"{args.samples}-sample predictive {med[3]:8.3f} s   ratio {ratio:.2f}x "
        f"(per repeat: {', '.join(f'{r:.2f}' for r in pred_ratios)})"
    )


if __name__ == "__main__":
    main()
