"""How long must the BNNs train? Accuracy against epochs, up to the authors' 600, for every
rho_init, trained as one stack (pyro_bnn.stack.fit_stack) without early stopping.

    python runs/bnn_curves.py                      # 7 rho_init, seed 0, 600 epochs (~75 min)
    python runs/bnn_curves.py --seed 1
    python runs/bnn_curves.py --combine            # only the seeds table, from the seeds present
    python runs/bnn_curves.py --quick              # smoke run on a slice, temp dirs

Every epoch records the authors' validation metric (the mean prediction of 10 weight
samples). Every --eval-every epochs (the authors saved every 20) it adds Table 1's metric,
single-sample accuracy, averaged over --curve-runs samples, on validation and test; the
selection table averages --runs (Table 1's 100). A second
stack trains the same nets with the paper text's rule, early stopping with patience 5.

Writes to --results (default runs/results/curves/):
- curves_seed<S>.csv: one row per model and epoch (the eval columns every --eval-every);
- selection_seed<S>.csv: test accuracy under each selection rule (best validation epoch,
  last epoch, patience 5) beside the paper's Table 1;
- curves_seed<S>.png: validation and test accuracy against epochs, one line per rho_init;
- selection_seeds.csv/.md: the selection tables of every seed present, combined (mean,
  standard deviation and range of test accuracy over seeds).
The fitted guides go to --root (best-validation and last epoch, via pyro_bnn.save_bnn).
The best-validation BNNs are also saved as the study's BNN artifacts under --export
(default runs/artifacts/full, runs/study/zoo.py): fit_stack with the same seeds and settings is
what train_bnns runs, so `reproduce.py --profile full` loads them instead of training
them again (tests/test_runs.py checks that the two give the same nets).
A killed run resumes from its checkpoints and from the rows already written.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402

from pyro_bnn import (  # noqa: E402
    BayesianMLP,
    evaluate,
    load_bnn,
    load_mnist,
    make_guide,
    save_bnn,
    sgd,
)
from pyro_bnn.artifacts import atomic_write, cached  # noqa: E402
from pyro_bnn.predict import single_sample_fn  # noqa: E402
from pyro_bnn.stack import fit_stack  # noqa: E402
from runs.study import paper  # noqa: E402
from runs.study.args import Parser, device, positive_int  # noqa: E402
from runs.study.config import BNN  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.plots import save_png  # noqa: E402
from runs.study.zoo import bnn_artifact  # noqa: E402

HERE = Path(__file__).resolve().parent
PATIENCE = 5  # the paper text's rule


def rho_inits(root: str | Path, seed: int) -> list[float]:
    """The rho_init of every BNN this script saved for ``seed`` under ``root``, ascending."""
    prefix = f"seed{seed}_rho"
    names = [path.name for path in Path(root).glob(f"{prefix}*_best")]
    return sorted(float(name[len(prefix) : -len("_best")]) for name in names)


def single_sample_acc(bnn, guide, split, runs: int, seed: int) -> float:
    """Table 1's metric in percent: single-sample accuracy, mean over ``runs`` samples."""
    pyro.set_rng_seed(seed)  # the same weight samples on every rerun
    return 100 * evaluate(single_sample_fn(bnn, guide, runs), split.x, split.y)["acc"]


def build(rho_inits, device) -> tuple[list, list]:
    bnns = [BayesianMLP(paper.TABLE1_ARCH).to(device) for _ in rho_inits]
    guides = [make_guide("softplus-normal", b, rho_init=r) for b, r in zip(bnns, rho_inits)]
    return bnns, guides


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="runs/bnn_curves.py", description=__doc__.splitlines()[0])
    p.add_argument("--rho-init", type=float, nargs="+", default=list(paper.RHO_INITS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=positive_int, default=600)
    p.add_argument("--eval-every", type=positive_int, default=20)
    p.add_argument(
        "--runs",
        type=positive_int,
        default=paper.SINGLE_SAMPLE_RUNS,
        help="single-sample runs for the selection table (Table 1's 100)",
    )
    p.add_argument(
        "--curve-runs",
        type=positive_int,
        default=20,
        help="single-sample runs per point of the curve",
    )
    p.add_argument("--lr", type=float, default=BNN.lr, help="SGD lr per datapoint")
    p.add_argument("--device", type=device, default="cpu")
    p.add_argument("--no-compile", action="store_true", help="eager fused step")
    p.add_argument("--root", default=None, help="default runs/artifacts/curves")
    p.add_argument("--results", default=None, help="default runs/results/curves")
    p.add_argument("--export", default=None, help="default runs/artifacts/full")
    p.add_argument("--limit", type=positive_int, default=None, help="train on a slice")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="2 rho_init, 1,000 images, 4 epochs")
    p.add_argument("--combine", action="store_true", help="only combine the seeds' tables")
    args = p.parse_args(argv)
    if args.quick:  # and, unless given, temporary folders
        args.rho_init, args.max_epochs, args.eval_every = [-3.0, -30.0], 4, 2
        args.runs = args.curve_runs = 5
        args.limit = 1000
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.root, args.results = args.root or temp, args.results or temp
        args.export = args.export or temp
    args.root = args.root or str(HERE / "artifacts" / "curves")
    args.results = args.results or str(HERE / "results" / "curves")
    args.export = args.export or str(HERE / "artifacts" / "full")
    if args.combine:
        print(combine(Path(args.results)))
        return 0
    command = "python runs/bnn_curves.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = (load_mnist() if args.limit is None else load_mnist().head(args.limit)).to(args.device)
    root, results = Path(args.root), Path(args.results)
    tag = f"seed{args.seed}" + ("" if args.lr == BNN.lr else f"_lr{args.lr:g}")
    curve_file = results / f"curves_{tag}.csv"
    done = pd.read_csv(curve_file) if curve_file.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    seen = {(r["rho_init"], r["epoch"]) for r in rows}
    settings = dict(
        optimizer=sgd(lr=args.lr, momentum=BNN.momentum),
        batch_size=BNN.batch_size,
        val_samples=BNN.val_samples,
        device=args.device,
        compile=not args.no_compile,
        progress=not args.no_progress,
    )
    bnns, guides = build(args.rho_init, args.device)

    def record(entry: dict) -> None:
        k, epoch = entry["model"], entry["epoch"]
        rho = args.rho_init[k]
        if (rho, epoch) in seen:
            return
        row = {"rho_init": rho, **{c: v for c, v in entry.items() if c != "model"}}
        row["val_acc"] = 100 * row["val_acc"]  # the authors' metric: mean of 10 samples
        if epoch % args.eval_every == 0 or epoch == args.max_epochs:
            for split in ("val", "test"):
                split_data, runs = getattr(data, split), args.curve_runs
                row[f"{split}_single"] = single_sample_acc(bnns[k], guides[k], split_data, runs, 0)
            row["runs"] = args.curve_runs
        if epoch == args.max_epochs:
            save_bnn(root / f"{tag}_rho{rho:g}_last", bnns[k], guides[k], epoch=epoch)
        rows.append(row)
        seen.add((rho, epoch))
        table = pd.DataFrame(rows).sort_values(["rho_init", "epoch"], ascending=[False, True])
        atomic_write(curve_file, lambda tmp: table.to_csv(tmp, index=False))

    def row(rho: float, rule: str, epoch: int, val_mean10: float, bnn, guide) -> dict:
        """One line of the selection table: a rule, its epoch and the accuracies there."""
        return {
            "rho_init": rho,
            "rule": rule,
            "epoch": epoch,
            "val_mean10": val_mean10,
            "val_single": single_sample_acc(bnn, guide, data.val, args.runs, 0),
            "test_single": single_sample_acc(bnn, guide, data.test, args.runs, 0),
        }

    start = time.perf_counter()
    long = fit_stack(
        bnns,
        guides,
        data,
        seeds=[args.seed] * len(bnns),
        max_epochs=args.max_epochs,
        patience=None,
        callbacks=[record],
        checkpoints=[root / f"{tag}_rho{r:g}.ckpt" for r in args.rho_init],
        **settings,
    )
    long_s = time.perf_counter() - start
    summary = []
    train = replace(BNN, lr=args.lr, max_epochs=args.max_epochs)
    for rho, bnn, guide, result in zip(args.rho_init, bnns, guides, long):
        save_bnn(root / f"{tag}_rho{rho:g}_best", bnn, guide, **result.summary())
        curve = pd.DataFrame(rows).query("rho_init == @rho").set_index("epoch")
        export(guide, result.summary(), curve, rho, data, train, args)
        best = (result.best_epoch, 100 * result.best_val)
        summary.append(row(rho, "best validation", *best, bnn, guide))
        last_bnn, last_guide = load_bnn(root / f"{tag}_rho{rho:g}_last", args.device)
        last = (args.max_epochs, curve.loc[args.max_epochs, "val_acc"])
        summary.append(row(rho, f"last epoch ({args.max_epochs})", *last, last_bnn, last_guide))
    start = time.perf_counter()
    bnns5, guides5 = build(args.rho_init, args.device)
    short = fit_stack(
        bnns5,
        guides5,
        data,
        seeds=[args.seed] * len(bnns5),
        max_epochs=args.max_epochs,
        patience=PATIENCE,
        checkpoints=[root / f"{tag}_rho{r:g}_patience{PATIENCE}.ckpt" for r in args.rho_init],
        **settings,
    )
    short_s = time.perf_counter() - start
    for rho, bnn, guide, result in zip(args.rho_init, bnns5, guides5, short):
        best = (result.best_epoch, 100 * result.best_val)
        summary.append(row(rho, f"patience {PATIENCE} (paper text)", *best, bnn, guide))
    table = pd.DataFrame(summary)
    table["paper_test"] = table["rho_init"].map(lambda r: paper.TABLE1_BNN.get(r, (None,) * 2)[1])
    table["minus_paper"] = table["test_single"] - table["paper_test"]
    table = table.sort_values(["rho_init", "rule"], ascending=[False, True])
    footer = (
        f"\nMade by `{command}` on {describe(args.device)}, device {args.device}. "
        f"Training time (the members' shares of each stack, kept in the "
        f"checkpoints, without validation): {sum(r.wall_time_s for r in long) / 60:.1f} min "
        f"for the {args.max_epochs}-epoch stack, {sum(r.wall_time_s for r in short) / 60:.1f} "
        f"min for the patience-{PATIENCE} stack; this invocation: "
        f"{(long_s + short_s) / 60:.1f} min.\n"
    )
    markdown = table.to_markdown(index=False, floatfmt=".2f") + "\n" + footer
    atomic_write(results / f"selection_{tag}.md", lambda tmp: tmp.write_text(markdown))
    atomic_write(results / f"selection_{tag}.csv", lambda tmp: table.to_csv(tmp, index=False))
    plot(pd.DataFrame(rows), results / f"curves_{tag}.png", args)
    print(markdown)
    if tag == f"seed{args.seed}":
        print(combine(results))
    return 0


def export(guide, summary: dict, curve: pd.DataFrame, rho: float, data, train, args) -> None:
    """Save a best-validation BNN as the study's artifact (runs/study/zoo.py's format and config)
    under --export, with its history rebuilt from the curve (one row per epoch)."""
    history = curve.reset_index()[["epoch", "elbo", "nll", "kl", "val_acc"]]
    history = history.assign(val_acc=history["val_acc"] / 100).to_dict("records")
    path, config = bnn_artifact(rho, data, train=train, root=args.export, seed=args.seed)
    state = {k: v.detach().cpu() for k, v in guide.state_dict().items()}
    cached(path, config, lambda: (state, {**summary, "history": history}), log=print)


def combine(results: Path) -> str:
    """Combine every selection_seed<S>.csv under ``results`` (the default lr) into
    selection_seeds.csv/.md: test accuracy per rho_init and rule over seeds."""
    seeds = {f: f.stem.removeprefix("selection_seed") for f in results.glob("selection_seed*.csv")}
    files = sorted(f for f, seed in seeds.items() if seed.isdigit())
    if not files:
        raise SystemExit(f"no selection_seed<S>.csv in {results}: run bnn_curves.py first")
    each = pd.concat(pd.read_csv(f).assign(seed=int(seeds[f])) for f in files)
    rules = each.groupby(["rho_init", "rule"], sort=False)
    table = rules["test_single"].agg(["mean", "std", "min", "max", "count"]).reset_index()
    table = table.rename(columns={"mean": "test_mean", "std": "test_sd", "count": "seeds"})
    table["epochs"] = rules["epoch"].agg(lambda e: "/".join(str(v) for v in e)).values
    table["paper_test"] = rules["paper_test"].first().values
    table["mean_minus_paper"] = table["test_mean"] - table["paper_test"]
    table = table.sort_values(["rho_init", "rule"], ascending=[False, True])
    markdown = (
        f"Test accuracy (single sample, mean of the runs in each seed's table) over seeds "
        f"{', '.join(str(s) for s in sorted(each['seed'].unique()))}; epochs: the selected "
        "epoch per seed.\n\n"
        + table.to_markdown(index=False, floatfmt=".2f")
        + "\n\nMade by `python runs/bnn_curves.py --combine` from "
        + ", ".join(f.name for f in files)
        + ".\n"
    )
    atomic_write(results / "selection_seeds.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(results / "selection_seeds.md", lambda tmp: tmp.write_text(markdown))
    return markdown


def plot(curves: pd.DataFrame, path: Path, args) -> None:
    """Validation (mean of 10 samples) and test (single sample) accuracy against epochs."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = plt.cm.viridis([i / max(len(args.rho_init) - 1, 1) for i in range(len(args.rho_init))])
    for rho, color in zip(args.rho_init, colors):
        curve = curves.query("rho_init == @rho").sort_values("epoch")
        axes[0].plot(curve["epoch"], curve["val_acc"], color=color, lw=1, label=f"rho {rho:g}")
        evals = curve.dropna(subset=["test_single"])
        axes[1].plot(evals["epoch"], evals["test_single"], "o-", color=color, ms=3, lw=1)
        if rho in paper.TABLE1_BNN:
            axes[1].axhline(paper.TABLE1_BNN[rho][1], color=color, ls="--", lw=0.8)
    axes[0].set(title="validation, mean of 10 samples (authors' metric)", xlabel="epoch")
    axes[1].set(
        title=f"test, single sample (mean of {args.curve_runs}); dashed: paper's Table 1",
        xlabel="epoch",
    )
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(max(80, curves["val_acc"].min() - 1), 100)
    axes[0].legend(fontsize=8)
    save_png(fig, path)


if __name__ == "__main__":
    sys.exit(main())
