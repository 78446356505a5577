"""The same BNN on a CUDA GPU or the CPU: train by SVI, predict with many weight samples,
attack, and time each stage on the device it ran on.

    python examples/gpu.py                    # cuda if there is one, else cpu; 50k images
    python examples/gpu.py --device cpu       # force the CPU
    python examples/gpu.py --quick            # 2,000 images, 3 epochs, < 1 min on a CPU

Nothing in the code depends on the device except one argument: the data go to the device
once (``load_mnist(...).to(device)``), ``fit_svi(..., device=device)`` moves the model and
guide there, and every prediction and attack then runs where its inputs are. The weight
samples are drawn on the device, so a GPU's numbers differ from a CPU's in their random
draws, not in what is computed. A fitted guide's state dict saved from the GPU loads on
the CPU (``guide.to("cpu")``) and the other way round.

Stages timed: SVI with the fused step of :func:`pyro_bnn.fit_stack` (what ``fit_svi``
picks for a BayesianMLP with the paper's guide), the same epochs through Pyro's own
``Trace_ELBO``, the posterior predictive of 100 weight samples on the test set, and 20
steps of PGD with EOT on the rule.
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
    fit_svi,
    load_mnist,
    make_guide,
    sampler,
)
from pyro_bnn.attacks import eot_model, pgd_attack


def pick_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine; use cpu")
    return device


def timed(device: torch.device, fn):
    """(fn(), its wall time in s), waiting for the GPU's queue to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:i]")
    p.add_argument("--quick", action="store_true", help="2,000 images, 3 epochs")
    p.add_argument("--epochs", type=int, default=None, help="default 10 (quick: 3)")
    p.add_argument("--arch", default=None, help="default FC-400-400-10 (quick: FC-100-100-10)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (quick: 1)")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    torch.set_num_threads(args.threads or (1 if args.quick else torch.get_num_threads()))
    epochs = args.epochs or (3 if args.quick else 10)
    arch = args.arch or ("FC-100-100-10" if args.quick else "FC-400-400-10")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), {torch.get_num_threads()} CPU threads")

    data = load_mnist(download=False)
    if args.quick:
        data = data.head(2000, 1000)
    data = data.to(device)  # the one line that moves data; everything else follows it

    def fit(engine: str):
        torch.manual_seed(0)
        bnn = BayesianMLP(arch, prior=ScaleMixtureNormal())
        guide = make_guide("softplus-normal", bnn, rho_init=-5.0)
        result = fit_svi(
            bnn,
            guide,
            data,
            optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
            batch_size=args.batch_size,
            max_epochs=epochs,
            patience=None,
            device=device,
            engine=engine,
            progress=not args.quick,
        )
        return bnn, guide, result

    rows = []
    (bnn, guide, result), seconds = timed(device, lambda: fit("stack"))
    rows.append({"stage": f"SVI, fused step, {epochs} epochs", "wall_s": seconds,
                 "result": f"val acc {result.best_val:.4f}"})  # fmt: skip
    (_, _, pyro_result), seconds = timed(device, lambda: fit("pyro"))
    rows.append({"stage": f"SVI, Pyro Trace_ELBO, {epochs} epochs", "wall_s": seconds,
                 "result": f"val acc {pyro_result.best_val:.4f}"})  # fmt: skip

    x, y = data.test.x, data.test.y
    predict = ensemble_fn(bnn, guide, size=100, runs=1)  # x -> (1, N, C)
    scores, seconds = timed(device, lambda: evaluate(predict, x, y))
    rows.append({"stage": f"predictive, 100 samples, {len(x)} images", "wall_s": seconds,
                 "result": f"test acc {scores['acc']:.4f}"})  # fmt: skip

    rule = eot_model(sampler(bnn, guide, ensemble=10, log=True), 1)
    n = 100 if args.quick else 1000
    attack = functools.partial(pgd_attack, rule, x[:n], y[:n], 1.0, steps=20, eot=5, passes=8)
    found, seconds = timed(device, lambda: attack(progress=False))
    rows.append({"stage": f"PGD + EOT 5, 20 steps, {n} images", "wall_s": seconds,
                 "result": f"robust acc {found.accuracy():.4f} at L2 1.0"})  # fmt: skip

    table = pd.DataFrame(rows).assign(device=str(device))
    print(table.to_markdown(index=False, floatfmt=".2f"))
    return table


if __name__ == "__main__":
    main()
