"""What decides the authors' survivors: the paper attack's live share, epoch by epoch, beside
the source's validation accuracy and loss, against the authors' notebook.

    python runs/source_fingerprint.py                       # FC-10, FC-100, FC-200; lambda 0, 1e-4
    python runs/source_fingerprint.py --archs FC-200-200-10 --lams 0 --seeds 0 1
    python runs/source_fingerprint.py --quick               # a slice, 3 epochs, temp dirs

Each source trains as the paper protocol's (runs.study.config.PAPER_SOURCE: batch 128,
SGD, --epochs epochs, the same seed and init as runs/attack_budget.py's), and after every
epoch it records on the validation split: accuracy, loss (Keras' clipped cross-entropy
plus the eq. 6 penalty, as the notebook printed it), the median top-2 logit gap, and the
live share: the examples with a target whose probability at the attack's start lies
inside Keras' clip (pyro_bnn.attacks.live_targets), the ceiling on the survivors. Each
source's history is an artifact under <root>/fingerprint/, so a killed run resumes
source by source.

The loss-matched epoch of a source is the epoch whose loss is nearest the notebook's
among those within --acc-tol points of its accuracy: the history the notebook's two
printed numbers pick; where the loss is flat the pick is loose, so beside it stand every
epoch within --loss-tol of that loss and their live shares. Then the epochs whose live share
lies within 10% of the notebook's survivors: how many, and their longest run.

Writes fingerprint_<tag>.csv (every epoch), fingerprint_<tag>_summary.csv and .md (a row
per source) and a .png to --results (default runs/results/budget/); tag: <archs>, suffixed
_lam<l1>_<l2>... for --lams other than 0 and 1e-4.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pyro_bnn import load_mnist  # noqa: E402
from pyro_bnn.artifacts import artifact_dir, atomic_write, cached  # noqa: E402
from pyro_bnn.attacks import live_targets  # noqa: E402
from pyro_bnn.nets import MLP, l2_penalty  # noqa: E402
from pyro_bnn.train import fit_torch  # noqa: E402
from runs.study import paper  # noqa: E402
from runs.study.args import (  # noqa: E402
    Parser,
    device,
    exit_timed,
    positive_float,
    positive_int,
    started,
)
from runs.study.attack_sets import attack_config  # noqa: E402
from runs.study.config import PAPER_SOURCE  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.naming import baseline_name  # noqa: E402
from runs.study.plots import save_png  # noqa: E402
from runs.study.tables import keras_loss  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_LAMS = (0.0, 1e-4)
LIVE_TOL = 0.1  # live_near_epochs: the live share within 10% of the notebook's survivors


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="runs/source_fingerprint.py", description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["FC-10", "FC-100-100-10", "FC-200-200-10"])
    p.add_argument("--lams", type=float, nargs="+", default=list(DEFAULT_LAMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=positive_int, default=PAPER_SOURCE.max_epochs)
    p.add_argument(
        "--acc-tol", type=positive_float, default=0.3, help="points of accuracy (see above)"
    )
    p.add_argument("--loss-tol", type=positive_float, default=1e-3, help="loss (see above)")
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--results", default=str(HERE / "results" / "budget"))
    p.add_argument("--limit", type=positive_int, default=None, help="train on a slice")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--quick", action="store_true", help="FC-10, 3 epochs on a slice, temp dirs")
    args = p.parse_args(argv)
    if args.quick:
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.archs, args.lams, args.seeds, args.epochs = ["FC-10"], [0.0], [0], 3
        args.limit, args.root, args.results = 1000, temp, temp
    command = started(args, "runs/source_fingerprint.py", argv)
    data = load_mnist() if args.limit is None else load_mnist().head(args.limit)
    data = data.to(args.device)
    histories = [
        history(data, arch, lam, seed, args.epochs, args.root, args.device)
        for arch in args.archs
        for lam in args.lams
        for seed in args.seeds
    ]
    epochs = pd.concat(histories, ignore_index=True)
    summary = summarise(epochs, args.acc_tol, args.loss_tol)
    results, tag = Path(args.results), "_".join(args.archs)
    if tuple(args.lams) != DEFAULT_LAMS:
        tag += "_lam" + "_".join(f"{lam:g}" for lam in args.lams)
    atomic_write(results / f"fingerprint_{tag}.csv", lambda t: epochs.to_csv(t, index=False))
    atomic_write(
        results / f"fingerprint_{tag}_summary.csv", lambda t: summary.to_csv(t, index=False)
    )
    markdown = (
        summary.to_markdown(index=False, floatfmt=".4g")
        + f"\n\nMade by `{command}` on {args.device} ({describe(args.device)}); loss-matched: "
        f"the nearest loss within {args.acc_tol} points of the notebook's accuracy; loss-tied: "
        f"every such epoch within {args.loss_tol} of its loss; live-near: the epochs whose live "
        f"share is within {LIVE_TOL:.0%} of its survivors (how many; the longest run).\n"
    )
    atomic_write(results / f"fingerprint_{tag}_summary.md", lambda t: t.write_text(markdown))
    plot(epochs, summary, results / f"fingerprint_{tag}.png")
    print(markdown)
    return 0


def history(data, arch: str, lam: float, seed: int, epochs: int, root, dev) -> pd.DataFrame:
    """One source's per-epoch record (an artifact): trained as a paper-protocol source."""
    train = PAPER_SOURCE.fit_kwargs() | {"max_epochs": epochs}
    start = attack_config("paper")
    config = {"arch": arch, "lam": lam, "seed": seed, "epochs": epochs,
              "n_train": len(data.train.x), "n_val": len(data.val.x),
              "train": {k: v for k, v in train.items() if k != "optimizer"},
              "lr": PAPER_SOURCE.lr, "momentum": PAPER_SOURCE.momentum,
              "r_init": start["r_init"], "prob_clip": start["prob_clip"]}  # fmt: skip
    val = data.val

    def compute():
        torch.manual_seed(seed)  # the init of runs.study.zoo.train_baseline
        net = MLP(arch)
        records = []

        def probe(record: dict) -> bool:
            net.eval()
            with torch.no_grad():
                logits = net(val.x)
                loss = keras_loss(logits, val.y) + l2_penalty(net, lam)
                top2 = logits.topk(2, -1).values  # (N, 2)
            live = live_targets(net, val.x, val.y, r_init=start["r_init"],
                                prob_clip=start["prob_clip"]).any(-1)  # fmt: skip
            net.train()
            records.append({
                "epoch": record["epoch"],
                "val_acc": 100 * float((logits.argmax(-1) == val.y).double().mean()),
                "val_loss": float(loss),
                "logit_gap_median": float((top2[:, 0] - top2[:, 1]).median()),
                "live_share": float(live.double().mean()),
            })  # fmt: skip
            return False

        fit_torch(net, data, lam=lam, seed=seed, device=dev, progress=False, callbacks=[probe],
                  **train)  # fmt: skip
        table = {k: torch.tensor([r[k] for r in records], dtype=torch.float64) for k in records[0]}
        return table, {}

    name = f"{baseline_name(arch, lam, seed)}_{epochs}ep"
    tensors, _ = cached(artifact_dir(root, "fingerprint", name), config, compute, log=print)
    frame = pd.DataFrame({k: v.numpy() for k, v in tensors.items()})
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.assign(arch=arch, lam=lam, seed=seed)


def summarise(epochs: pd.DataFrame, acc_tol: float, loss_tol: float) -> pd.DataFrame:
    """A row per source: the last epoch; the loss-matched epoch and every epoch within
    ``loss_tol`` of the notebook's loss (both within ``acc_tol`` points of its accuracy),
    with their live shares; the epochs whose live share is within 10% of its survivors."""
    rows = []
    for (arch, lam, seed), h in epochs.groupby(["arch", "lam", "seed"], sort=False):
        last = h.iloc[-1]
        theirs = paper.AUTHORS_SETS.get((arch, lam))
        row = {"arch": arch, "lam": lam, "seed": seed, "epochs": int(last["epoch"]),
               "val_acc": last["val_acc"], "val_loss": last["val_loss"],
               "live_share": last["live_share"]}  # fmt: skip
        if theirs is not None:
            survivors, _, acc, loss = theirs
            near = h[(h["val_acc"] - acc).abs() <= acc_tol]
            match = near.loc[(near["val_loss"] - loss).abs().idxmin()] if len(near) else None
            tied = near[(near["val_loss"] - loss).abs() <= loss_tol]
            share = survivors / paper.AUTHORS_VAL_IMAGES
            close = (h["live_share"] / share - 1).abs() <= LIVE_TOL
            row |= {
                "authors_val_acc": acc,
                "authors_val_loss": loss,
                "authors_survivors": share,
                "matched_epoch": None if match is None else int(match["epoch"]),
                "matched_val_acc": None if match is None else match["val_acc"],
                "matched_val_loss": None if match is None else match["val_loss"],
                "matched_live_share": None if match is None else match["live_share"],
                "loss_tied_epochs": _span(tied["epoch"]),
                "loss_tied_live": _span(tied["live_share"].round(3)),
                "live_near_count": int(close.sum()),
                "live_near_run": _longest_run(h["epoch"][close]),
            }
        rows.append(row)
    return pd.DataFrame(rows)


def _span(values: pd.Series) -> str | None:
    """'min-max' of values, None if there are none."""
    return f"{values.min():g}-{values.max():g}" if len(values) else None


def _longest_run(epochs: pd.Series) -> str | None:
    """The longest run of consecutive epochs, as 'first-last'."""
    best, start, prev = None, None, None
    for e in list(epochs) + [None]:
        if e is None or prev is None or e != prev + 1:
            if prev is not None and (best is None or prev - start > best[1] - best[0]):
                best = (start, prev)
            start = e
        prev = e
    return None if best is None else f"{best[0]}-{best[1]}"


def plot(epochs: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    """Per source: the validation loss and the live share against the epoch, with the
    notebook's loss and survivors as dashed lines."""
    sources = list(summary.groupby(["arch", "lam"], sort=False).groups)
    fig, axes = plt.subplots(2, len(sources), figsize=(3.2 * len(sources), 5.5), squeeze=False)
    for j, (arch, lam) in enumerate(sources):
        h = epochs[(epochs["arch"] == arch) & (epochs["lam"] == lam)]
        theirs = paper.AUTHORS_SETS.get((arch, lam))
        for seed, g in h.groupby("seed"):
            axes[0, j].plot(g["epoch"], g["val_loss"], label=f"seed {seed}")
            axes[1, j].plot(g["epoch"], g["live_share"], label=f"seed {seed}")
        if theirs is not None:
            axes[0, j].axhline(theirs[3], ls="--", c="k", lw=1, label="notebook")
            axes[1, j].axhline(theirs[0] / paper.AUTHORS_VAL_IMAGES, ls="--", c="k", lw=1,
                               label="notebook's survivors")  # fmt: skip
        axes[0, j].set_title(f"{arch}, lambda {lam:g}", fontsize=9)
        axes[1, j].set_xlabel("epoch")
        axes[0, j].set_ylim(top=min(axes[0, j].get_ylim()[1], 2 * h["val_loss"].min() + 0.05))
    axes[0, 0].set_ylabel("val loss (Keras)")
    axes[1, 0].set_ylabel("live share (survivors' ceiling)")
    axes[1, 0].legend(fontsize=7)
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)
