"""Wall time of an attack per source architecture, and the share spent in the model.

The model function is wrapped so that, in the same run, its forward calls are timed
directly and its backward pass is timed between the gradient hooks on its output and on
its input. The nets are freshly initialised: the cost of a step does not depend on the
weights, and the attack runs a fixed number of steps.

    python benchmarks/attack_speed.py --n 10000 --steps 100
    python benchmarks/attack_speed.py --protocol paper --n 1000 --steps 20
    python benchmarks/attack_speed.py --device cuda --protocol paper --n 2000 --steps 4000
    python benchmarks/attack_speed.py --protocol paper --n 1000 --against 1adb7b6 --repeats 3

``--against REF`` also times the same attack function of the library at git commit REF, in
the same process and in rotating order with today's (median of --repeats each), and gives
today's wall time over REF's and the largest difference between their perturbations.
On cuda the forward and backward shares count only the time to queue the GPU's work.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import pandas as pd
import torch
from refs import library_at

from pyro_bnn.data import load_mnist
from pyro_bnn.nets import MLP
from runs.study.args import device
from runs.study.attack_sets import get_protocol
from runs.study.machine import describe
from runs.study.paper import SOURCE_ARCHS


class TimedModel:
    """A model function that adds up the seconds spent in its forward and backward passes."""

    def __init__(self, fn) -> None:
        self.fn, self.forward_s, self.backward_s = fn, 0.0, 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.fn(x)
        self.forward_s += time.perf_counter() - start
        if x.requires_grad:
            mark = {}
            out.register_hook(lambda grad: mark.update(start=time.perf_counter()))
            x.register_hook(lambda grad: self._backward_done(mark))
        return out

    def _backward_done(self, mark: dict) -> None:
        self.backward_s += time.perf_counter() - mark["start"]


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="rigorous", help="rigorous or paper")
    parser.add_argument("--archs", nargs="+", default=list(SOURCE_ARCHS))
    parser.add_argument("--n", type=int, default=10_000, help="test images to attack")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the attack's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    parser.add_argument("--against", default=None, help="a git commit whose attack to time too")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each attack")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    attack = get_protocol(args.protocol)
    attacks = {"today": attack}
    if args.against:
        attacks[args.against] = getattr(library_at(args.against).attacks, attack.__name__)
    test = load_mnist().test.head(args.n).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    settings = {"steps": args.steps}
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    rows = []
    for arch in args.archs:
        torch.manual_seed(0)
        net = MLP(arch).to(args.device).eval().requires_grad_(False)
        walls, results, models = {name: [] for name in attacks}, {}, {}
        for r in range(args.repeats):
            names = list(attacks)[r % len(attacks) :] + list(attacks)[: r % len(attacks)]
            for name in names:  # rotating order
                models[name] = model = TimedModel(net)
                sync()
                start = time.perf_counter()
                results[name] = attacks[name](model, test.x, test.y, progress=False, **settings)
                sync()
                walls[name].append(time.perf_counter() - start)
        wall, model, result = statistics.median(walls["today"]), models["today"], results["today"]
        row = {
            "arch": arch,
            "protocol": args.protocol,
            "n": len(test),
            "steps": args.steps,
            "device": args.device,
            "machine": describe(args.device),
            "wall_s": wall,
            "s_per_step": wall / args.steps,
            "forward_s": model.forward_s,
            "backward_s": model.backward_s,
            "model_share": (model.forward_s + model.backward_s) / wall,
            "success_rate": float(result.success.float().mean()),
        }
        if args.against:
            then = results[args.against]
            row[f"wall_s_{args.against}"] = statistics.median(walls[args.against])
            row["today_over_then"] = wall / row[f"wall_s_{args.against}"]
            row["max_abs_r_diff"] = float((result.r - then.r).abs().max())
        rows.append(row)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return table


if __name__ == "__main__":
    main()
