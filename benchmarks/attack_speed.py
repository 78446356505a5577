"""Wall time of an attack per source architecture, and the share spent in the model.

The model function is wrapped so that, in the same run, its forward calls are timed
directly and its backward pass is timed between the gradient hooks on its output and on
its input. The nets are freshly initialised: the cost of a step does not depend on the
weights, and the attack runs a fixed number of steps.

    python benchmarks/attack_speed.py --n 10000 --steps 100
    python benchmarks/attack_speed.py --protocol paper --n 1000 --steps 20
    python benchmarks/attack_speed.py --device cuda --protocol paper --n 2000 --steps 4000

On cuda the forward and backward shares count only the time to queue the GPU's work.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import pandas as pd
import torch

from pyro_bnn.data import load_mnist
from pyro_bnn.nets import MLP
from runs.args import device
from runs.attack_sets import get_protocol
from runs.paper import SOURCE_ARCHS


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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    attack = get_protocol(args.protocol)
    test = load_mnist().test.head(args.n).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    settings = {"steps": args.steps}
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    rows = []
    for arch in args.archs:
        torch.manual_seed(0)
        model = TimedModel(MLP(arch).to(args.device).eval().requires_grad_(False))
        sync()
        start = time.perf_counter()
        result = attack(model, test.x, test.y, progress=False, **settings)
        sync()
        wall = time.perf_counter() - start
        rows.append(
            {
                "arch": arch,
                "protocol": args.protocol,
                "n": len(test),
                "steps": args.steps,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "wall_s": wall,
                "s_per_step": wall / args.steps,
                "forward_s": model.forward_s,
                "backward_s": model.backward_s,
                "model_share": (model.forward_s + model.backward_s) / wall,
                "success_rate": float(result.success.float().mean()),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return table


if __name__ == "__main__":
    main()
