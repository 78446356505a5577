"""Would stacking the plain nets pay? K plain nets' SGD steps, one after another, against
one step of the same K nets stacked (batched matmuls), as fit_stack does for the BNNs.

Both sides run in one process, interleaved; the median ratio over repeats is reported.

    python benchmarks/plain_stack.py                 # FC-100-100-10, K = 4 (the lambdas)
    python benchmarks/plain_stack.py --k 10 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from pyro_bnn import MLP
from pyro_bnn.nets import parse_arch
from runs.study.machine import describe


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="FC-100-100-10")
    p.add_argument("--k", type=int, default=4, help="nets")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a worker's 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = (784, *parse_arch(args.arch))  # (784, 100, 100, 10)
    k, b = args.k, args.batch_size
    x, y = torch.rand(k, b, sizes[0]), torch.randint(0, sizes[-1], (k, b))
    nets = [MLP(args.arch) for _ in range(k)]
    opts = [torch.optim.SGD(n.parameters(), lr=1e-3, momentum=0.95) for n in nets]
    weights = [torch.randn(k, m, n, requires_grad=True) for m, n in zip(sizes, sizes[1:])]
    biases = [torch.zeros(k, 1, n, requires_grad=True) for n in sizes[1:]]
    opt = torch.optim.SGD(weights + biases, lr=1e-3, momentum=0.95)

    def one_by_one():
        for net, o, xk, yk in zip(nets, opts, x, y):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(net(xk), yk).backward()
            o.step()

    def stacked():
        opt.zero_grad(set_to_none=True)
        h = x  # (K, B, D)
        for i, (w, bias) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(bias, h, w)  # (K, B, n)
            h = h.relu() if i < len(weights) - 1 else h
        loss = F.cross_entropy(h.reshape(k * b, -1), y.reshape(k * b), reduction="sum") / b
        loss.backward()  # the sum of the K nets' mean losses
        opt.step()

    def timed(fn, n):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    timed(one_by_one, 20), timed(stacked, 20)  # warm up
    ratios = []
    for r in range(args.repeats):
        pair = (one_by_one, stacked) if r % 2 == 0 else (stacked, one_by_one)
        t = {fn.__name__: timed(fn, args.steps) for fn in pair}
        ratios.append(t["stacked"] / t["one_by_one"])
    ratio = statistics.median(ratios)
    print(
        f"{args.arch}, K = {k}, batch {b}, {describe()}: a stacked step "
        f"takes {ratio:.2f}x the time of {k} separate steps "
        f"(per repeat: {', '.join(f'{v:.2f}' for v in ratios)})"
    )
    return ratio


if __name__ == "__main__":
    main()
