"""Train the paper's seven BNNs (rho_init = -30 ... -1.5) and print Table 1's BNN rows.

    python runs/train_bnns.py                      # full MNIST, paper settings
    python runs/train_bnns.py --limit 2000 --max-epochs 3 --rho-init -3 -2   # smoke run

The BNNs not yet trained train together, as one stack (pyro_bnn.stack.fit_stack). Each
BNN is an artifact under --root (reused on rerun, resumed after a kill). Accuracy is
single-sample accuracy averaged over --runs weight samples, the paper's protocol, with the
weight samples seeded by --seed, so a rerun prints the same numbers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace

import pandas as pd
import pyro

from pyro_bnn.data import load_mnist
from pyro_bnn.evaluate import evaluate
from pyro_bnn.predict import single_sample_fn
from runs.study import paper
from runs.study.args import Parser, device, positive_int
from runs.study.config import BNN
from runs.study.zoo import train_bnns


def main(argv: list[str] | None = None) -> int:
    """Train (or load) each BNN and print its row of Table 1 beside the paper's."""
    p = Parser(prog="runs/train_bnns.py", description=__doc__.splitlines()[0])
    p.add_argument("--rho-init", type=float, nargs="+", default=list(paper.RHO_INITS))
    p.add_argument("--root", default="runs/artifacts")
    p.add_argument("--limit", type=positive_int, default=None, help="first N train/val/test")
    p.add_argument("--max-epochs", type=positive_int, default=BNN.max_epochs)
    p.add_argument("--runs", type=positive_int, default=paper.SINGLE_SAMPLE_RUNS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="cpu")
    p.add_argument("--compile", action="store_true", help="fuse the step with torch.compile")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1,000 images, 2 epochs, the BNNs of Tables 3 and 4, in a temp root",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.max_epochs, args.runs = 1000, 2, 5
        args.rho_init = [paper.TABLE3_RHO_INIT, paper.TABLE4_RHO_INIT]
        args.root = tempfile.mkdtemp(prefix="pyro_bnn_quick_")

    data = load_mnist()
    data = (data if args.limit is None else data.head(args.limit)).to(args.device)
    start = time.perf_counter()
    trained = train_bnns(
        args.rho_init,
        data,
        train=replace(BNN, max_epochs=args.max_epochs),
        root=args.root,
        seed=args.seed,
        device=args.device,
        compile=args.compile,
        progress=not args.no_progress,
        log=print,
    )
    print(f"trained or loaded in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for rho, (bnn, guide, meta) in zip(args.rho_init, trained):
        pyro.set_rng_seed(args.seed)  # the same weight samples on every rerun
        fn = single_sample_fn(bnn, guide, runs=args.runs)
        val = evaluate(fn, data.val.x, data.val.y)
        test = evaluate(fn, data.test.x, data.test.y)
        paper_val, paper_test = paper.TABLE1_BNN.get(rho, (None, None))
        rows.append(
            {
                "rho_init": rho,
                "val_acc": 100 * val["acc"],
                "test_acc": 100 * test["acc"],
                "test_acc_std": 100 * test["acc_std"],
                "paper_val": paper_val,
                "paper_test": paper_test,
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "train_s": meta["wall_time_s"],
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
