"""How far the rigorous attack is from the smallest perturbation, with and without the
targeted passes of ``min_norm_attack(n_targets=k)``.

For a linear softmax net (FC-10) the smallest L2 perturbation inside the pixel box that
reaches the decision boundary of class j is the projection of x onto {x': (w_y - w_j) x' +
b_y - b_j <= 0} within the box: x'(lam) = clip(x - lam (w_y - w_j)), with lam found by
bisection. The minimum over j is the exact boxed minimum, which no attack can beat. For the
non-linear source nets the reference is the smallest r that any of the runs found.

Attacks the first --n test images with the rigorous settings, once per --n-targets value,
on each finished source net under --root; the fractions within 1 % and above 5 % of the
reference count the examples the net classifies correctly (reference > 0). wall_s is the
attack's time alone.

    python benchmarks/attack_optimality.py --root runs/artifacts/full --archs FC-10  # ~15 s
    python benchmarks/attack_optimality.py --n 10000 --n-targets 0 2 3  # FC-1200: minutes
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from pyro_bnn import load_mnist
from pyro_bnn.artifacts import load_artifact
from pyro_bnn.attacks import min_norm_attack
from pyro_bnn.data import X_MAX
from pyro_bnn.nets import MLP
from runs.study.machine import describe
from runs.study.naming import baseline_name
from runs.study.paper import LAMBDAS, SOURCE_ARCHS


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


def source_net(root: str, name: str) -> MLP | None:
    """The finished source net called ``name`` under root/source/, or None if there is none."""
    folders = sorted(Path(root, "source").glob(f"{name}_*/meta.json"))
    if len(folders) > 1:
        raise SystemExit(f"several source nets called {name}: {[str(f.parent) for f in folders]}")
    if not folders:
        return None
    tensors, meta = load_artifact(folders[0].parent)
    net = MLP(meta["config"]["arch"])
    net.load_state_dict(tensors)
    return net.eval().requires_grad_(False)


def tail(norm: torch.Tensor, ref: torch.Tensor) -> dict:
    """How far norms (N,) (inf: failed) lie above the reference (N,), over ref > 0 (the
    examples the net classifies correctly)."""
    moved = ref > 0
    ratio = norm[moved] / ref[moved]
    return {
        "within_1pct": float((ratio <= 1.01).double().mean()),
        "above_5pct": float((ratio > 1.05).double().mean()),
        "median_ratio": float(ratio.median()),
        "reference_distortion": float((ref / 28).mean()),
        "distortion": float((norm.nan_to_num(posinf=0) / 28).mean()),
    }


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="runs/artifacts/full")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--archs", nargs="+", default=list(SOURCE_ARCHS))
    p.add_argument("--lams", type=float, nargs="+", default=list(LAMBDAS))
    p.add_argument("--n", type=int, default=1000, help="first test images to attack")
    p.add_argument("--n-targets", type=int, nargs="+", default=[0, 2], help="one run each")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args(argv)
    test = load_mnist().test.head(args.n)
    rows = []
    for seed, arch, lam in itertools.product(args.seeds, args.archs, args.lams):
        name = baseline_name(arch, lam, seed)
        net = source_net(args.root, name)
        if net is None:
            print(f"{name}: no finished source net under {args.root}, skipped")
            continue
        found, norms = [], []
        for k in args.n_targets:
            start = time.perf_counter()
            result = min_norm_attack(
                net, test.x, test.y, steps=args.steps, n_targets=k, progress=False
            )
            wall = time.perf_counter() - start
            norms.append(result.norms().double().masked_fill(~result.success, math.inf))
            success = float(result.success.double().mean())
            found.append({"net": name, "n_targets": k, "wall_s": wall, "success": success})
        if len(net.layers) == 1:
            w, b = net.layers[0].weight.double(), net.layers[0].bias.double()
            ref, reference = exact_boxed_minimum(w, b, test.x.double(), test.y), "exact"
        else:
            ref, reference = torch.stack(norms).amin(0), "best of runs"  # (N,)
        rows += [
            row | {"reference": reference} | tail(norm, ref) for row, norm in zip(found, norms)
        ]
    table = pd.DataFrame(rows)
    print(f"{describe('cpu')}, n = {len(test)}")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return table


if __name__ == "__main__":
    main()
