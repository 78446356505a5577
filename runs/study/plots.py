"""The figures: accuracy against rho_init, ensemble size and pruning rate, each beside the
paper's, and example adversarial digits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pyro_bnn.artifacts import atomic_write  # noqa: E402
from pyro_bnn.data import X_MAX  # noqa: E402

from . import paper  # noqa: E402

__all__ = ["claims_forest", "digit_examples", "plots", "save_png"]


def digit_examples(sets, data, multiplier: float, protocol: str, n: int = 8) -> dict:
    """Originals and visibly perturbed images (||r|| > 0.5) of one source, preferring the
    unregularised FC-1200 and FC-200 nets: {'x', 'x_adv', 'source', 'protocol', ...}."""
    order = sorted(sets, key=lambda s: (s.source.lam != 0, -len(s.source.arch)))
    for s in order:
        ok = s.tensors["success"] & (s.tensors["r"].norm(dim=1) > 0.5)
        if ok.sum() >= n:
            pick = ok.nonzero().squeeze(1)[:n]
            x = data.split(s.split).x[s.tensors["index"][pick]]
            return {  # on the CPU, for matplotlib
                "x": x.cpu(),
                "x_adv": (x + multiplier * s.tensors["r"][pick]).cpu(),
                "source": s.source.name,
                "protocol": protocol,
                "multiplier": multiplier,
            }
    return {}


def plots(frames: dict[str, pd.DataFrame], digits: dict, results: Path, protocols: list[str]):
    """Write the four PNGs under ``results``: one panel per protocol."""
    results.mkdir(parents=True, exist_ok=True)
    _per_protocol(_rho, frames, protocols, results / "accuracy_vs_rho.png")
    _per_protocol(_ensemble, frames, protocols, results / "accuracy_vs_ensemble.png")
    _per_protocol(_pruning, frames, protocols, results / "accuracy_vs_pruning.png")
    shown = [d for d in digits.values() if d]
    if shown:
        _digits(shown, results / "adversarial_digits.png")


def _paper_avg(rows) -> list[float]:
    return [sum(col) / len(col) for col in zip(*rows)]


def _per_protocol(draw, frames: dict, protocols: list[str], path: Path) -> None:
    n = len(protocols)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        draw(ax, frames, protocol)
        ax.set(title=f"{protocol} protocol")
        ax.legend(fontsize=7)
    save_png(fig, path)


def _rho(ax, frames: dict, protocol: str) -> None:
    t1 = frames["table1"]
    clean = t1[(t1.kind == "bnn") & (t1.split == "test")].set_index("param")["acc"]
    avg = frames[f"{protocol}/table2"].groupby(["kind", "param"])["acc"].mean()
    ax.plot(clean.index, clean.values, "o-", label="BNN clean test")
    ax.plot(avg["bnn"].index, avg["bnn"].values, "s-", label="BNN perturbed (avg of 12)")
    ax.axhline(avg["plain"].max(), color="gray", label="best baseline perturbed")
    paper_clean = [v[1] for v in paper.TABLE1_BNN.values()]
    ax.plot(paper.RHO_INITS, paper_clean, "o--", color="C0", alpha=0.5, label="paper: clean test")
    paper_pert = _paper_avg(paper.TABLE2_BNN)
    ax.plot(paper.RHO_INITS, paper_pert, "s--", color="C1", alpha=0.5, label="paper: perturbed")
    ax.set(xlabel="rho_init", ylabel="accuracy (%)")


def _ensemble(ax, frames: dict, protocol: str) -> None:
    t3 = frames[f"{protocol}/table3"]
    for kind, style in (("bnn", "o-"), ("plain-ensemble", "s-")):
        part = t3[t3.kind == kind].groupby("N")["acc"].mean()
        if len(part):
            ax.plot(part.index, part.values, style, label=f"{kind} (ours)")
    ax.plot(paper.ENSEMBLE_SIZES, _paper_avg(paper.TABLE3), "o--", alpha=0.5, label="paper")
    ax.set(xscale="log", xlabel="ensemble size N", ylabel="perturbed accuracy, avg of 12 (%)")


def _pruning(ax, frames: dict, protocol: str) -> None:
    t4 = frames[f"{protocol}/table4"]
    for scope in ("global", "tensor"):
        part = t4[t4.scope == scope]
        test = part[part.set == "test"].set_index("rate")["acc"]
        pert = part[~part.set.isin(["val", "test"])].groupby("rate")["acc"].mean()
        ax.plot(test.index, test.values, "o-", label=f"clean test ({scope})")
        ax.plot(pert.index, pert.values, "s-", label=f"perturbed ({scope})")
    clean = paper.TABLE4_CLEAN["test"]
    ax.plot(paper.PRUNE_RATES, clean, "o--", alpha=0.5, label="paper: clean test")
    pert = _paper_avg(paper.TABLE4)
    ax.plot(paper.PRUNE_RATES, pert, "s--", alpha=0.5, label="paper: perturbed")
    ax.set(xlabel="pruning rate", ylabel="accuracy (%)")


def _digits(digits: list[dict], path: Path) -> None:
    """Two rows per protocol: originals, then x + multiplier * r; images (N, 784)."""
    cols = len(digits[0]["x"])
    fig, axes = plt.subplots(2 * len(digits), cols, figsize=(cols, 2.3 * len(digits)),
                             squeeze=False)  # fmt: skip
    for i, d in enumerate(digits):
        for j in range(cols):
            for k, key in enumerate(("x", "x_adv")):
                ax = axes[2 * i + k][j]
                ax.imshow(d[key][j].view(28, 28).clamp(0, X_MAX), cmap="gray")
                ax.axis("off")
        axes[2 * i][0].set_title(
            f"{d['protocol']}: original (top) and x + {d['multiplier']:g} r, source {d['source']}",
            fontsize=7,
            loc="left",
        )
    save_png(fig, path)


VERDICT_COLORS = {"holds": "C2", "fails": "C3", "inconclusive": "0.5"}


def claims_forest(frame: pd.DataFrame, path: Path) -> None:
    """Every claim with its intervals, one panel per threat model and one row per claim:
    within a row, one point and bar per size (a marker each, in the legend), green where
    it holds, red where it fails, grey where the interval spans 0; hollow where a cell
    rests on fewer seeds than the most any cell has.

    :param frame: rows (claim, threat, size, estimate, ci_low, ci_high, verdict[, seeds]).
    """
    threats = list(dict.fromkeys(frame["threat"]))
    claims = list(dict.fromkeys(frame["claim"]))[::-1]  # first claim on top
    sizes = list(dict.fromkeys(frame["size"]))  # one marker per size, across the panels
    seeds = frame["seeds"] if "seeds" in frame else pd.Series(1, index=frame.index)
    size = (5 + 3.2 * len(threats), 1.5 + 0.42 * len(claims))
    fig, axes = plt.subplots(1, len(threats), sharey=True, squeeze=False, figsize=size)
    for ax, threat in zip(axes[0], threats):
        part = frame[frame.threat == threat]
        shown = list(dict.fromkeys(part["size"]))
        for k, label in enumerate(shown):
            cells = part[part["size"] == label]
            y = [claims.index(c) + 0.6 * ((k + 0.5) / len(shown) - 0.5) for c in cells["claim"]]
            colors = [VERDICT_COLORS.get(v, "k") for v in cells["verdict"]]
            ax.errorbar(cells["estimate"], y, xerr=[cells["estimate"] - cells["ci_low"],
                        cells["ci_high"] - cells["estimate"]], fmt="none", ecolor=colors,
                        lw=1)  # fmt: skip
            full = (seeds[cells.index] == seeds.max()).to_numpy()
            marker = MARKERS[sizes.index(label) % len(MARKERS)]
            ax.scatter(cells["estimate"], y, marker=marker, s=22, zorder=3, edgecolors=colors,
                       facecolors=[c if f else "white" for c, f in zip(colors, full)])  # fmt: skip
            ax.scatter([], [], marker=marker, s=22, color="k", label=label)  # the legend's
        ax.axvline(0, color="k", lw=0.8)
        for row in range(len(claims)):
            ax.axhline(row + 0.5, color="0.9", lw=0.5, zorder=0)
        ax.set_title(threat, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel("paired difference, points (95% interval)", fontsize=7)
        ax.legend(fontsize=6, loc="lower right", title="size", title_fontsize=6)
    axes[0, 0].set_yticks(range(len(claims)), [textwrap.fill(c, 55) for c in claims], fontsize=7)
    axes[0, 0].set_ylim(-0.5, len(claims) - 0.5)
    save_png(fig, path)


MARKERS = "osD^vP*Xph"  # one per size within a panel


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Lay out ``fig``, write it to ``path`` as a PNG atomically, and close it."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    plt.close(fig)
