"""The ``pyro-bnn`` command. Each subcommand is a thin layer over library functions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line instead of usage + message."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", default="runs/artifacts", help="artifact folder (default: %(default)s)"
    )
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: shipped copy)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first LIMIT train and LIMIT val/test examples (smoke runs)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _sgd(p: argparse.ArgumentParser, max_epochs: int) -> None:
    p.add_argument("--max-epochs", type=int, default=max_epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.95)
    p.add_argument("--patience", type=int, default=5)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyro-bnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train-baseline", help="train plain FC nets with the eq. 6 L2 penalty")
    p.add_argument("--arch", default="FC-100-100-10", help="e.g. FC-100-100-10 (default)")
    p.add_argument(
        "--lam",
        type=float,
        nargs="+",
        default=[0.0, 1e-4, 1e-2, 1.0],
        help="L2 strengths (default: the paper's 0 1e-4 1e-2 1)",
    )
    _sgd(p, max_epochs=100)
    _common(p)

    p = sub.add_parser("train-bnn", help="fit Bayesian FC nets by SVI, one per --rho-init")
    p.add_argument(
        "--rho-init",
        type=float,
        nargs="+",
        default=[-3.0],
        help="initial rho of the guide (default: -3); the paper sweeps -30 ... -1.5",
    )
    p.add_argument("--arch", default="FC-100-100-10", help="e.g. FC-100-100-10 (default)")
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
        type=int,
        default=10,
        help="weight samples averaged for validation accuracy (default: 10)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=100,
        help="single-sample runs averaged for the printed accuracy (default: 100)",
    )
    _sgd(p, max_epochs=300)
    _common(p)

    p = sub.add_parser("train-sources", help="train the 12 source nets the attacks are made on")
    _sources(p)
    _sgd(p, max_epochs=100)
    _common(p)

    p = sub.add_parser("attack", help="build attack sets on the source nets, print distortion")
    p.add_argument("--protocol", default="rigorous", choices=["rigorous", "paper"])
    p.add_argument("--split", default="test", help="split to attack (default: %(default)s)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="attack steps (default: the protocol's: rigorous 100; paper 4000 as the authors)",
    )
    p.add_argument("--examples", type=int, default=None, help="attack only the first EXAMPLES")
    p.add_argument("--attack-batch-size", type=int, default=None, help="examples per attack batch")
    _sources(p)
    _sgd(p, max_epochs=100)
    _common(p)
    return parser


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


def _load_data(args):
    from pyro_bnn.data import load_mnist

    data = load_mnist(args.data_dir)
    return data.head(args.limit) if args.limit else data


def _settings(args) -> dict:
    return {
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "momentum": args.momentum,
        "patience": args.patience,
    }


def cmd_train_baseline(args) -> None:
    import pandas as pd

    from pyro_bnn.evaluate import as_probs, evaluate
    from .zoo import train_baseline

    data = _load_data(args)
    rows = []
    for lam in args.lam:
        model, meta = train_baseline(
            args.arch,
            lam,
            data,
            root=args.root,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            **_settings(args),
        )
        probs = as_probs(model)
        rows.append(
            {
                "arch": args.arch,
                "lambda": lam,
                "val_acc": evaluate(probs, data.val.x.to(args.device), data.val.y.to(args.device))[
                    "acc"
                ],
                "test_acc": evaluate(
                    probs, data.test.x.to(args.device), data.test.y.to(args.device)
                )["acc"],
                "epochs": meta["epochs"],
                "best_epoch": meta["best_epoch"],
                "train_s": meta["wall_time_s"],
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4f"))


def _train_sources(args, data):
    from .sources import SOURCE_ARCHS, SOURCE_LAMS, train_sources

    return train_sources(
        data,
        archs=args.archs or SOURCE_ARCHS,
        lams=args.lams or SOURCE_LAMS,
        root=args.root,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        **_settings(args),
    )


def cmd_train_bnn(args) -> None:
    import pandas as pd

    from pyro_bnn.evaluate import evaluate
    from pyro_bnn.predict import single_sample_fn
    from .zoo import train_bnn

    data = _load_data(args)
    rows = []
    for rho in args.rho_init:
        bnn, guide, meta = train_bnn(
            rho,
            data,
            arch=args.arch,
            prior=args.prior,
            guide=args.guide,
            root=args.root,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            val_samples=args.val_samples,
            **_settings(args),
        )
        probs = single_sample_fn(bnn, guide, runs=args.runs)
        accs = {
            split: evaluate(
                probs, data.split(split).x.to(args.device), data.split(split).y.to(args.device)
            )
            for split in ("val", "test")
        }
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


def cmd_train_sources(args) -> None:
    from .sources import source_table

    data = _load_data(args)
    table = source_table(_train_sources(args, data), data)
    print(table.to_markdown(index=False, floatfmt=".4f"))


def cmd_attack(args) -> None:
    from .attack_sets import attack_config
    from .sources import attack_sources

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
        root=args.root,
        device=args.device,
        progress=not args.no_progress,
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
    args = build_parser().parse_args(argv)
    from pyro_bnn.data import DataError

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
