"""The authors' attack at their budget: what changes between 100 and 4000 steps per target.

    python runs/attack_budget.py                               # FC-10 and FC-200: 2000 val
    python runs/attack_budget.py --archs FC-1200-1200-10 --n 200   # a subset, n stated
    python runs/attack_budget.py --sets-only --n 10000 --steps 1000  # sets beside the authors'
    python runs/attack_budget.py --quick                       # smoke run, temp dirs
    python runs/attack_budget.py --archs FC-10 FC-200-200-10 FC-1200-1200-10 --device cuda

For every source net and budget (--steps, default 100 400 1000 4000) it runs the paper
variant of the attack (pyro_bnn.attacks.paper_attack: all targets of a batch in one
pass) on the first --n validation images, and reports the survivors (examples kept), how
many of them the source already misclassified, the distortion, the source's accuracy and
loss, and beside them the authors' notebook's (runs.study.paper.AUTHORS_SETS). Unless
--sets-only, also the Table 2 cells: the seven BNNs of runs/bnn_curves.py (best
validation epoch; single sample, mean of --runs) at x + 1.5 r and the four plain
FC-100-100-10 nets at x + 3 r, as the authors' code scores them, each beside the paper's
cell and the difference. Attack sets are
artifacts under --root: a killed run resumes set by set.

--sources paper (the default) trains the sources as the authors' notebook did
(runs.study.config.PAPER_SOURCE: batch 128, --source-epochs epochs, the last kept), the
paper protocol's own; --sources early-stopped trains them as the rigorous protocol's
(patience 5, at most --plain-epochs).

Writes sets_<tag>.csv (one row per source and budget), budget_<tag>.csv (one row per
source, budget and model) unless --sets-only, a .md of both and a .png to --results
(default runs/results/budget/); tag: <archs>_n<n>, prefixed 'paper-sources_' for
--sources paper and suffixed _<epochs>ep for --source-epochs other than the recipe's,
_lam<l1>_<l2>... for --lams other than the paper's four, and _clip<p> for a --prob-clip
other than Keras' (--prob-clip 0 is the control that shows what Keras' clip decides).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pyro_bnn import load_bnn, load_mnist  # noqa: E402
from pyro_bnn.artifacts import atomic_write  # noqa: E402
from pyro_bnn.attacks.paper import KERAS_EPSILON  # noqa: E402
from runs import bnn_curves  # noqa: E402
from runs.study import paper, tables  # noqa: E402
from runs.study.args import (  # noqa: E402
    Parser,
    device,
    exit_timed,
    positive_int,
    probability_clip,
    started,
)
from runs.study.attack_sets import attack_set  # noqa: E402
from runs.study.config import PAPER_SOURCE, PLAIN  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.pipeline import on_device  # noqa: E402
from runs.study.plots import save_png  # noqa: E402
from runs.study.sources import train_sources  # noqa: E402
from runs.study.zoo import PAPER_SOURCE_KIND, train_baseline  # noqa: E402

HERE = Path(__file__).resolve().parent
BNN_MULT, PLAIN_MULT = 1.5, 3.0  # the authors' code (AUTHORS_CODE.md, Transfer evaluation)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="runs/attack_budget.py", description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=list(paper.SOURCE_ARCHS[:2]))
    p.add_argument("--lams", type=float, nargs="+", default=list(paper.LAMBDAS))
    p.add_argument("--steps", type=positive_int, nargs="+", default=[100, 400, 1000, 4000])
    p.add_argument("--n", type=positive_int, default=2000, help="validation images attacked")
    p.add_argument("--runs", type=positive_int, default=paper.SINGLE_SAMPLE_RUNS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--bnn-root", default=str(HERE / "artifacts" / "curves"))
    p.add_argument("--results", default=str(HERE / "results" / "budget"))
    p.add_argument("--limit", type=positive_int, default=None, help="train on a slice")
    p.add_argument(
        "--plain-epochs",
        type=positive_int,
        default=PLAIN.max_epochs,
        help="max epochs of the early-stopped sources and the plain nets",
    )
    p.add_argument(
        "--sources",
        choices=["paper", "early-stopped"],
        default="paper",
        help="how the sources train (see above)",
    )
    p.add_argument(
        "--source-epochs",
        type=positive_int,
        default=PAPER_SOURCE.max_epochs,
        help="epochs of the --sources paper nets",
    )
    p.add_argument(
        "--sets-only",
        action="store_true",
        help="only the sets beside the authors': no BNNs, no Table 2 cells",
    )
    p.add_argument(
        "--prob-clip",
        type=probability_clip,
        default=KERAS_EPSILON,
        help="the attack's clip of the target's probability (0: none; a control)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="FC-10, 2 budgets, tiny BNNs, temp dirs")
    args = p.parse_args(argv)
    if args.quick:
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.archs, args.lams, args.steps, args.n, args.runs = ["FC-10"], [0.0], [5, 20], 100, 5
        args.limit, args.root, args.results, args.bnn_root = 1000, temp, temp, temp
        args.plain_epochs = args.source_epochs = 3
        if not args.sets_only:
            bnn_curves.main(["--quick", "--no-compile", "--no-progress", "--root", temp,
                             "--results", temp])  # fmt: skip
    command = started(args, "runs/attack_budget.py", argv)
    data = load_mnist() if args.limit is None else load_mnist().head(args.limit)
    data = data.to(args.device)
    plain = replace(PLAIN, max_epochs=args.plain_epochs)
    root, results = Path(args.root), Path(args.results)
    faithful = args.sources == "paper"
    recipe, kind = (
        (replace(PAPER_SOURCE, max_epochs=args.source_epochs), PAPER_SOURCE_KIND)
        if faithful
        else (plain, "source")
    )
    sources = train_sources(data, archs=args.archs, lams=args.lams, train=recipe, root=root,
                            seed=args.seed, device=args.device, progress=False, log=print,
                            kind=kind)  # fmt: skip

    def attacked(src, steps: int) -> tables.AttackSet:
        tensors, meta = attack_set(
            src.name, src.net, data, protocol="paper", split="val", limit=args.n, root=root,
            fingerprint=src.fingerprint, steps=steps, device=args.device, log=print,
            prob_clip=args.prob_clip,
        )  # fmt: skip
        return tables.AttackSet(src, on_device(tensors, args.device), meta, "val")

    # every attack set first (artifacts: a killed run resumes set by set)
    sets = {steps: [attacked(src, steps) for src in sources] for steps in args.steps}
    sets_df = pd.concat(
        tables.attack_summary(budget_sets, data, authors=faithful).assign(steps=steps)
        for steps, budget_sets in sets.items()
    )
    theirs = sets_df[["authors_success_rate", "authors_distortion"]].astype(float)
    sets_df = sets_df.assign(
        survivors_vs_authors=sets_df["success_rate"] / theirs["authors_success_rate"],
        distortion_vs_authors=sets_df["distortion"] / theirs["authors_distortion"],
        wrong_share=sets_df["already_wrong"] / sets_df["n_success"].clip(lower=1),
    )
    tag = ("paper-sources_" if faithful else "") + "_".join(args.archs) + f"_n{args.n}"
    if faithful and args.source_epochs != PAPER_SOURCE.max_epochs:
        tag += f"_{args.source_epochs}ep"
    if tuple(args.lams) != paper.LAMBDAS:
        tag += "_lam" + "_".join(f"{lam:g}" for lam in args.lams)
    if args.prob_clip != KERAS_EPSILON:
        tag += f"_clip{args.prob_clip:g}"
    footer = (
        f"Made by `{command}` on {args.device} ({describe(args.device)}); "
        f"sources: {args.sources}, n = {args.n} validation images per source.\n"
    )
    atomic_write(results / f"sets_{tag}.csv", lambda tmp: sets_df.to_csv(tmp, index=False))
    markdown = sets_df.to_markdown(index=False, floatfmt=".3f") + "\n\n" + footer
    if args.sets_only:
        atomic_write(results / f"sets_{tag}.md", lambda tmp: tmp.write_text(markdown))
        plot(sets_df, None, results / f"sets_{tag}.png")
        print(markdown)
        return 0
    plains = {}
    for lam in paper.LAMBDAS:
        net, _ = train_baseline(paper.TABLE1_ARCH, lam, data, train=plain, root=root,
                                seed=args.seed, device=args.device, progress=False)  # fmt: skip
        plains[lam] = net.eval().requires_grad_(False)
    bnns = {}
    for rho in bnn_curves.rho_inits(args.bnn_root, args.seed):
        bnn, guide = load_bnn(Path(args.bnn_root) / f"seed{args.seed}_rho{rho:g}_best", args.device)
        bnns[rho] = (bnn, guide.requires_grad_(False))
    if not bnns:
        raise SystemExit(f"no BNNs of seed {args.seed} in {args.bnn_root}: run bnn_curves.py")
    zoo = tables.Zoo(args.seed, bnns, plains, [], [])
    cells = [
        tables.table2(zoo, budget_sets, data, args.runs, BNN_MULT, PLAIN_MULT, False).assign(
            steps=steps
        )
        for steps, budget_sets in sets.items()
    ]
    cells_df = pd.concat(cells)
    cells_df["diff"] = cells_df["acc"] - cells_df["paper"].astype(float)
    atomic_write(results / f"budget_{tag}.csv", lambda tmp: cells_df.to_csv(tmp, index=False))

    def wide(values: str) -> str:
        table = cells_df.pivot_table(index=["source", "steps"], columns=["kind", "param"],
                                     values=values)  # fmt: skip
        return table.to_markdown(floatfmt=".2f")

    markdown = (
        sets_df.to_markdown(index=False, floatfmt=".3f")
        + "\n\nTable 2 cells (accuracy %, survivors only; BNN x1.5, plain x3):\n\n"
        + wide("acc")
        + "\n\nThe same cells minus the paper's Table 2 (points):\n\n"
        + wide("diff")
        + f"\n\nBNNs from {args.bnn_root}.\n"
        + footer
    )
    atomic_write(results / f"budget_{tag}.md", lambda tmp: tmp.write_text(markdown))
    plot(sets_df, cells_df, results / f"budget_{tag}.png")
    print(markdown)
    return 0


def plot(sets_df: pd.DataFrame, cells_df: pd.DataFrame | None, path: Path) -> None:
    """Survivors (as a rate of the images attacked) and distortion against the budget, the
    authors' as a dotted line where known; and, given cells, the mean Table 2 cell per model
    kind."""
    fig, axes = plt.subplots(1, 2 if cells_df is None else 3, figsize=(14, 4))
    for source, rows in sets_df.groupby("source"):
        rows = rows.sort_values("steps")
        for ax, col in zip(axes, ("success_rate", "distortion")):
            (line,) = ax.plot(rows["steps"], rows[col], "o-", label=source)
            theirs = rows[f"authors_{col}"].dropna()
            if len(theirs):
                ax.axhline(theirs.iloc[0], ls=":", color=line.get_color())
    for ax, title in zip(axes, ("survivors / images attacked", "distortion (/126 scale)")):
        ax.set(xscale="log", xlabel="steps per target", title=title)
    axes[0].legend(fontsize=7)
    if cells_df is None:
        save_png(fig, path)
        return
    means = cells_df.groupby(["kind", "param", "steps"])["acc"].mean().reset_index()
    for (kind, param), rows in means.groupby(["kind", "param"]):
        style = "-" if kind == "bnn" else "--"
        axes[2].plot(rows["steps"], rows["acc"], style, marker="o", ms=3, label=f"{kind} {param:g}")
    axes[2].set(xscale="log", xlabel="steps per target", title="mean Table 2 cell (%)")
    axes[2].legend(fontsize=6, ncol=2)
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)
