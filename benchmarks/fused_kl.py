"""Where the SVI step's floor lies: the weight draw plus the Monte Carlo KL, eager vs
``torch.compile``, for 1 and K stacked models, against one plain SGD step.

The pass is the part of every SVI step that does not shrink with batching: draw
w = mu + softplus(rho) * eps over all P weights, then log q(w) - log p(w) under the
paper's scale-mixture prior, forward and backward. Pure torch, no Pyro: this measures
what a fused implementation could reach, not the library's step.

    python benchmarks/fused_kl.py                  # FC-100-100-10 (P = 89,610), K = 1 and 7
    python benchmarks/fused_kl.py --no-compile     # eager only
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from pyro_bnn import MLP, load_mnist

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
PI, S1, S2 = 0.5, math.exp(-1), math.exp(-7)  # the paper's prior
C1 = math.log(PI) - math.log(S1) - LOG_SQRT_2PI
C2 = math.log(1 - PI) - math.log(S2) - LOG_SQRT_2PI
H1, H2 = 0.5 / S1**2, 0.5 / S2**2


def kl_pass(mu: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Monte Carlo KL of one draw per model: mu, rho (K, P) -> (K,)."""
    eps = torch.randn_like(mu)
    sigma = F.softplus(rho)
    w = mu + sigma * eps
    log_q = (-sigma.log() - 0.5 * eps.square() - LOG_SQRT_2PI).sum(-1)
    w2 = w.square()
    log_p = torch.logaddexp(C1 - H1 * w2, C2 - H2 * w2).sum(-1)
    return log_q - log_p


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="FC-100-100-10")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 7], help="models stacked")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)

    data = load_mnist()
    net = MLP(args.arch)
    num_params = sum(q.numel() for q in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.95)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(data.train), (128,), generator=gen) for _ in range(32)]
    it = iter(range(10**9))

    def plain_step():
        idx = batches[next(it) % len(batches)]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(data.train.x[idx]), data.train.y[idx]).backward()
        opt.step()

    variants = {"eager": kl_pass}
    if not args.no_compile:
        variants["compiled"] = torch.compile(kl_pass, dynamic=False)
    timers = {"plain": plain_step}
    for k in args.ks:
        mu = torch.randn(k, num_params).mul_(0.05).requires_grad_()
        rho = torch.full((k, num_params), -3.0, requires_grad=True)
        for name, fn in variants.items():

            def step(fn=fn, mu=mu, rho=rho):
                mu.grad = rho.grad = None
                fn(mu, rho).sum().backward()

            timers[f"{name} K={k}"] = step
    start = time.perf_counter()
    for fn in timers.values():
        timed(fn, 10)  # warm up (and compile)
    print(f"warm-up and compilation: {time.perf_counter() - start:.1f} s")
    rows = {name: [] for name in timers}
    for r in range(args.repeats):
        names = list(timers)[r % len(timers) :] + list(timers)[: r % len(timers)]
        for name in names:  # rotating order
            rows[name].append(timed(timers[name], args.steps))
    plain = statistics.median(rows["plain"])
    print(
        f"{args.arch}: P = {num_params:,}; {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; median of {args.repeats} repeats x {args.steps} steps"
    )
    print(f"plain SGD step, batch 128       {plain * 1e3:7.3f} ms")
    for name in list(timers)[1:]:
        t = statistics.median(rows[name])
        k = int(name.split("K=")[1])
        print(
            f"draw + MC KL, {name:<12}      {t * 1e3:7.3f} ms = {t / plain:5.2f}x plain "
            f"({t / k * 1e3:.3f} ms = {t / k / plain:.2f}x per model)"
        )


if __name__ == "__main__":
    main()
