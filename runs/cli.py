"""The ``pyro-bnn`` command: the study's nets and attack sets, one subcommand each.

    pyro-bnn train-baseline [--arch FC-100-100-10] [--lam 0 1e-4 1e-2 1]
    pyro-bnn train-bnn --rho-init -3 [--prior scale-mixture] [--guide softplus-normal]
    pyro-bnn train-sources
    pyro-bnn attack --protocol rigorous|paper [--steps N] [--examples N]

Each subcommand is a thin layer over :mod:`runs.study.zoo`, :mod:`runs.study.sources` and
:mod:`runs.study.attack_sets`; every net and attack set is an artifact under --root, reused on a
rerun with the same settings (and the command says so).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd
import pyro

from pyro_bnn.data import DataError, load_mnist
from pyro_bnn.evaluate import as_probs, evaluate
from pyro_bnn.guides import DEFAULT_RHO_INIT
from pyro_bnn.predict import single_sample_fn

from .study import paper
from .study.args import Parser, device, positive_int
from .study.attack_sets import attack_config
from .study.config import BNN, PLAIN, TrainConfig
from .study.sources import attack_sources, source_table, train_sources
from .study.zoo import train_baseline, train_bnn

__all__ = ["build_parser", "main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", default="runs/artifacts", help="artifact folder (default: %(default)s)"
    )
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: shipped copy)")
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use only the first LIMIT train and LIMIT val/test examples (smoke runs)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _training(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    p.add_argument("--max-epochs", type=positive_int, default=defaults.max_epochs)
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--momentum", type=float, default=defaults.momentum)
    p.add_argument("--patience", type=positive_int, default=defaults.patience)


def _sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--archs",
        nargs="+",
        default=None,
        help="source archs (default: FC-10 FC-200-200-10 FC-1200-1200-10)",
    )
    p.add_argument(
        "--lams", type=float, nargs="+", default=None, help="L2 strengths (default: 0 1e-4 1e-2 1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pyro-bnn", description=__doc__.splitlines()[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train-baseline", help="train plain FC nets with the eq. 6 L2 penalty")
    p.add_argument("--arch", default=paper.TABLE1_ARCH, help="(default: %(default)s)")
    p.add_argument(
        "--lam",
        type=float,
        nargs="+",
        default=[0.0, 1e-4, 1e-2, 1.0],
        help="L2 strengths (default: the paper's 0 1e-4 1e-2 1)",
    )
    _training(p, PLAIN)
    _common(p)

    p = sub.add_parser("train-bnn", help="fit Bayesian FC nets by SVI, one per --rho-init")
    p.add_argument(
        "--rho-init",
        type=float,
        nargs="+",
        default=[DEFAULT_RHO_INIT],
        help="initial rho of the guide (default: %(default)s); the paper sweeps -30 ... -1.5",
    )
    p.add_argument("--arch", default=paper.TABLE1_ARCH, help="(default: %(default)s)")
    p.add_argument(
        "--prior",
        default="scale-mixture",
        help="scale-mixture (default, the paper's), normal, laplace or student-t",
    )
    p.add_argument(
        "--guide",
        default="softplus-normal",
        help="softplus-normal (default, the paper's), normal, lowrank or delta",
    )
    p.add_argument(
        "--val-samples",
        type=positive_int,
        default=BNN.val_samples,
        help="weight samples averaged for validation accuracy (default: %(default)s)",
    )
    p.add_argument(
        "--runs",
        type=positive_int,
        default=paper.SINGLE_SAMPLE_RUNS,
        help="single-sample runs averaged for the printed accuracy (default: %(default)s)",
    )
    _training(p, BNN)
    _common(p)

    p = sub.add_parser("train-sources", help="train the 12 source nets the attacks are made on")
    _sources(p)
    _training(p, PLAIN)
    _common(p)

    p = sub.add_parser("attack", help="build attack sets on the source nets, print distortion")
    p.add_argument("--protocol", default="rigorous", choices=["rigorous", "paper"])
    p.add_argument("--split", default="test", help="split to attack (default: %(default)s)")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="attack steps (default: the protocol's: rigorous 100; paper 4000 as the authors)",
    )
    p.add_argument(
        "--examples", type=positive_int, default=None, help="attack only the first EXAMPLES"
    )
    p.add_argument(
        "--attack-batch-size", type=positive_int, default=None, help="examples per attack batch"
    )
    _sources(p)
    _training(p, PLAIN)
    _common(p)
    return parser


def _load_data(args):
    data = load_mnist(args.data_dir)
    return data if args.limit is None else data.head(args.limit)


def _train_config(args, defaults: TrainConfig) -> TrainConfig:
    return TrainConfig(
        max_epochs=args.max_epochs,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        patience=args.patience,
        val_samples=getattr(args, "val_samples", defaults.val_samples),
    )


def _where(args) -> dict:
    """Where and how the zoo and the attack sets work, from the command line."""
    return {
        "root": args.root,
        "device": args.device,
        "progress": not args.no_progress,
        "log": print,
    }


def cmd_train_baseline(args) -> None:
    data = _load_data(args).to(args.device)
    train = _train_config(args, PLAIN)
    rows = []
    for lam in args.lam:
        model, meta = train_baseline(
            args.arch, lam, data, train=train, seed=args.seed, **_where(args)
        )
        acc = {s: evaluate(as_probs(model), data.split(s).x, data.split(s).y)["acc"]
               for s in ("val", "test")}  # fmt: skip
        rows.append(
            {
                "arch": args.arch,
                "lambda": lam,
                "val_acc": acc["val"],
                "test_acc": acc["test"],
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "train_s": meta["wall_time_s"],
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


def cmd_train_bnn(args) -> None:
    data = _load_data(args).to(args.device)
    train = _train_config(args, BNN)
    rows = []
    for rho in args.rho_init:
        bnn, guide, meta = train_bnn(
            rho, data, arch=args.arch, prior=args.prior, guide=args.guide, train=train,
            seed=args.seed, **_where(args),
        )  # fmt: skip
        pyro.set_rng_seed(args.seed)  # the same weight samples on every rerun
        probs = single_sample_fn(bnn, guide, runs=args.runs)
        accs = {s: evaluate(probs, data.split(s).x, data.split(s).y) for s in ("val", "test")}
        rows.append(
            {
                "arch": args.arch,
                "rho_init": rho,
                "val_acc": accs["val"]["acc"],
                "test_acc": accs["test"]["acc"],
                "test_acc_std": accs["test"]["acc_std"],
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "train_s": meta["wall_time_s"],
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4f"))


def _train_sources(args, data):
    return train_sources(
        data,
        archs=args.archs or paper.SOURCE_ARCHS,
        lams=args.lams or paper.LAMBDAS,
        train=_train_config(args, PLAIN),
        seed=args.seed,
        **_where(args),
    )


def cmd_train_sources(args) -> None:
    data = _load_data(args)
    table = source_table(_train_sources(args, data), data)
    print(table.to_markdown(index=False, floatfmt=".4f"))


def cmd_attack(args) -> None:
    given = {"steps": args.steps, "batch_size": args.attack_batch_size}
    settings = {k: v for k, v in given.items() if v is not None}
    attack_config(args.protocol, **settings)  # bad settings fail before any training
    data = _load_data(args)
    data.split(args.split)  # a bad split fails before any training
    table = attack_sources(
        _train_sources(args, data),
        data,
        protocol=args.protocol,
        split=args.split,
        limit=args.examples,
        **_where(args),
        **settings,
    )
    print(table.to_markdown(index=False, floatfmt=".4f"))


COMMANDS = {
    "train-bnn": cmd_train_bnn,
    "train-baseline": cmd_train_baseline,
    "train-sources": cmd_train_sources,
    "attack": cmd_attack,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``pyro-bnn`` subcommand; returns the exit code (1 on a bad value)."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (ValueError, DataError, FileNotFoundError) as err:
        print(f"pyro-bnn {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyro-bnn: interrupted; finished artifacts and checkpoints are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
