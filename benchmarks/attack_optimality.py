"""How far the rigorous attack is from the exact minimum on the linear FC-10 source nets.

For a linear softmax net the smallest L2 perturbation inside the pixel box that reaches the
decision boundary of class j is the projection of x onto {x': (w_y - w_j) x' + b_y - b_j
<= 0} within the box: x'(lam) = clip(x - lam (w_y - w_j)), with lam found by bisection. The
minimum over j is the exact boxed minimum, which no attack can beat. Reads the FC-10 source
nets and their rigorous attack sets from a finished full run.

    python benchmarks/attack_optimality.py [--root runs/artifacts/full] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from pyro_bnn import load_mnist
from pyro_bnn.data import X_MAX


def exact_boxed_minimum(weight, bias, x, y, iters: int = 40) -> torch.Tensor:
    """Per example, the smallest ||r|| with 0 <= x + r <= X_MAX on class y's boundary: (N,)."""
    z = x @ weight.T + bias
    best = torch.where(z.argmax(1) != y, 0.0, math.inf).to(x)
    for offset in range(1, weight.shape[0]):
        j = (y + offset) % weight.shape[0]
        a, db = weight[y] - weight[j], bias[y] - bias[j]  # (N, D), (N,)

        def gap(lam, a=a, db=db):
            return (a * (x - lam[:, None] * a).clamp(0, X_MAX)).sum(1) + db

        hi = torch.ones(len(y), dtype=x.dtype)
        for _ in range(60):  # grow until on the boundary's far side (or give up: infeasible)
            short = gap(hi) > 0
            if not short.any():
                break
            hi = torch.where(short, 2 * hi, hi)
        feasible = gap(hi) <= 0
        lo = torch.zeros_like(hi)
        for _ in range(iters):
            mid = (lo + hi) / 2
            ok = gap(mid) <= 0
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        norm = ((x - hi[:, None] * a).clamp(0, X_MAX) - x).norm(dim=1)
        best = torch.minimum(best, torch.where(feasible, norm, math.inf))
    return best


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/artifacts/full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    test = load_mnist().test
    x, y = test.x.double(), test.y
    print("| net | exact minimum distortion | attack distortion | median norm ratio |")
    print("|:--|--:|--:|--:|")
    for seed in args.seeds:
        for lam in ("0", "0.0001", "0.01", "1"):
            name = f"FC-10_lam{lam}_seed{seed}"
            net_path = Path(args.root, "source", name, "tensors.pt")
            set_path = Path(args.root, "attack-rigorous", name, "tensors.pt")
            if not (net_path.is_file() and set_path.is_file()):
                raise SystemExit(f"{net_path} or {set_path} missing: run the full profile first")
            state = torch.load(net_path, weights_only=True)
            exact = exact_boxed_minimum(
                state["layers.0.weight"].double(), state["layers.0.bias"].double(), x, y
            )
            ours = torch.load(set_path, weights_only=True)["r"].double().norm(dim=1)
            ratio = (ours / exact)[exact > 0].median().item()
            print(
                f"| {name} | {(exact / 28).mean():.4f} | {(ours / 28).mean():.4f} | {ratio:.4f} |"
            )


if __name__ == "__main__":
    main()
