"""REPORT.md: the verdict per claim and threat model, every table beside the paper's
numbers, the controls, the headline claims, the wall time and the plots, from the tables
that :mod:`runs.study.results` combined (and runs/epsilon_curves.py's, when present)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd

from pyro_bnn.artifacts import atomic_write

from . import intervals, paper, plots, tables
from .protocols import PROTOCOL_RULES
from .results import whole_numbers

__all__ = [
    "load_frames",
    "readme_approximations",
    "readme_times",
    "readme_verdict",
    "update_readme",
    "verdict_frame",
    "verdict_table",
    "wall_times",
    "write_report",
]


def _compute_table(seconds: dict) -> pd.DataFrame:
    """kind x seed seconds, with a total row and per-seed minutes."""
    frame = pd.DataFrame(seconds).T.fillna(0.0)
    frame = frame[sorted(frame.columns, key=int)]
    frame.columns = [f"seed {c}" for c in frame.columns]
    frame.loc["total (s)"] = frame.sum()
    frame.loc["total (min)"] = frame.loc["total (s)"] / 60
    return frame


def _cells(frame: pd.DataFrame, index: str, columns: str, value: str = "acc") -> pd.DataFrame:
    """Pivot to 'ours (paper)' strings with an Average row; 'ours ± sd (paper)' where
    several seeds give a spread (sd over seeds; the Average row has none)."""
    ours = frame.pivot_table(index=index, columns=columns, values=value, sort=False)
    spread = None
    if value == "acc" and frame.get("seeds", pd.Series([1])).max() > 1:
        spread = frame.pivot_table(index=index, columns=columns, values="acc_seed_std", sort=False)
    ref = (
        frame.pivot_table(index=index, columns=columns, values="paper", sort=False)
        if "paper" in frame and frame["paper"].notna().any()
        else None
    )
    ours.loc["Average"] = ours.mean()
    if ref is not None:
        ref = ref.reindex(index=ours.index[:-1], columns=ours.columns)
        ref.loc["Average"] = ref.mean()
    out = ours.copy().astype(object)
    for r in ours.index:
        for c in ours.columns:
            paper_v = None if ref is None else ref.loc[r, c]
            sd = None if spread is None or r == "Average" else spread.loc[r, c]
            out.loc[r, c] = (
                f"{ours.loc[r, c]:.2f}"
                + (f" ± {sd:.2f}" if sd is not None and pd.notna(sd) else "")
                + (f" ({paper_v:.2f})" if paper_v is not None and pd.notna(paper_v) else "")
            )
    return out


def _md(frame: pd.DataFrame, index: bool = True, floatfmt: str = ".2f") -> str:
    frame = frame.copy()
    if "param" in frame.columns:  # as text, so that lambda = 1e-4 does not print as 0.00
        kinds = frame["kind"] if "kind" in frame.columns else ["plain"] * len(frame)
        frame["param"] = [
            ("lambda " if str(k).startswith("plain") else "rho_init ") + f"{v:g}"
            for k, v in zip(kinds, frame["param"])
        ]
    if "lam" in frame.columns:
        frame["lam"] = [f"lambda {v:g}" for v in frame["lam"]]
    return whole_numbers(frame).to_markdown(index=index, floatfmt=floatfmt)


def load_frames(results: Path) -> dict[str, pd.DataFrame]:
    """Every CSV under ``results`` as {path relative to it, without .csv: table}, the
    names :func:`runs.study.results.write_tables` wrote them under."""
    return {
        csv.relative_to(results).with_suffix("").as_posix(): pd.read_csv(csv)
        for csv in sorted(Path(results).rglob("*.csv"))
    }


def write_report(path: Path, info: dict, results: Path, link: str | None = None) -> None:
    """Write REPORT.md at ``path`` from the CSVs under ``results`` alone, so that every
    number in it is one of theirs (a test rebuilds the committed reports this way).

    :param info: the run's record (command, profile, seeds, protocols, device, machine,
        date, commit, stage and compute seconds), as written to run.json.
    :param results: the folder of the CSVs and PNGs, linked from the report.
    :param link: the results folder as the report links it (default: its path relative to
        the report's folder).
    """
    frames = load_frames(results)
    rel = link or os.path.relpath(Path(results).resolve(), Path(path).resolve().parent)
    prof = info["profile"]
    lines = [
        "# Reproduction report: Zhang & Chen (2020)",
        "",
        f"Made by `{info['command']}` on {info['date']} (commit {info['commit']}), "
        f"profile **{prof['name']}**, seeds {info['seeds']}, "
        f"device **{info.get('device', 'cpu')}**.",
        f"Machine: {info['machine']}.",
        "Cells read `ours (paper)`; accuracies in %. BNN accuracy is single-sample accuracy "
        f"averaged over {prof['runs']} weight samples unless stated. "
        f"Results: [{rel}/]({rel}/) (CSV, long format, with the paper's value beside ours).",
        "",
        *_verdict_section(Path(results), info["protocols"], rel),
        "## Wall time",
        "",
        f"This invocation: {info['total_seconds']:.0f} s. Stages (this invocation, s):",
        "",
        _md(
            pd.DataFrame(list(info["stage_seconds"].items()), columns=["stage", "seconds"]),
            index=False,
        ),
        "",
        "Compute time per stage, recorded in the artifacts' meta.json (s). This is what a run "
        "from scratch spends and a rerun that reuses the artifacts does not. Training, and "
        "each source net's attack sets right after it, run in worker processes (`--workers`, "
        "one torch thread each), so their seconds add up to more than their wall time, and an "
        "attack set built there takes longer than one built in the main process on all "
        "threads (a killed run's missing sets are built there). Everything else runs in the "
        "main process; the white-box attacks count under their table.",
        "",
        _md(_compute_table(info["compute_seconds"])),
        "",
        "## Table 1: clean accuracy (FC-100-100-10)",
        "",
    ]
    t1 = frames["table1"]
    for kind, label in (("bnn", "rho_init"), ("plain", "lambda")):
        part = t1[t1.kind == kind]
        cells = _cells(part, "split", "param").drop(index="Average")
        cells.columns = [f"{label} {c:g}" for c in cells.columns]
        lines += [f"**{'BNN' if kind == 'bnn' else 'Baselines'}**", "", _md(cells), ""]
    lines += _sigma_section(frames["sigma"])
    lines += _controls_section(t1, frames.get("logit_gaps"))
    for protocol in info["protocols"]:
        lines += _protocol_section(frames, protocol, prof, frames[f"{protocol}/claims"])
    curves = Path(results) / "rigorous" / "epsilon_curves.md"
    if curves.exists():  # made by runs/epsilon_curves.py, with its own 'Made by' line
        lines += [
            "## White-box robust accuracy against eps",
            "",
            curves.read_text().strip(),
            "",
            f"![white-box robust accuracy against eps]({rel}/rigorous/epsilon_curves.png)",
            "",
        ]
    lines += [
        "## Plots",
        "",
        f"![accuracy vs rho_init]({rel}/accuracy_vs_rho.png)",
        f"![accuracy vs ensemble size]({rel}/accuracy_vs_ensemble.png)",
        f"![accuracy vs pruning rate]({rel}/accuracy_vs_pruning.png)",
        f"![original and adversarial digits]({rel}/adversarial_digits.png)",
        "",
    ]
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: tmp.write_text(text))


PROTOCOL_TEXT = {
    "paper": (
        "What the authors' code did: the targeted, brighten-only RMSprop attack with the "
        "linear c ramp ({budget}), on the "
        "**validation** split ({n} examples); examples the attack fails on are **dropped**; "
        "BNNs are scored on x + 1.5 r and baselines on x + 3 r, not clipped to the pixel "
        "box."
    ),
    "rigorous": (
        "Signed minimum-norm (DDN) attack, {steps} steps{targeted}, inside the pixel box, "
        "on the **test** split ({n} examples); every example counts (a failed attack leaves "
        "it unperturbed); no multiplier."
    ),
}


def _budget(steps: int) -> str:
    """The paper attack's steps per target, beside the authors' budget."""
    if steps == paper.ATTACK_STEPS:
        return f"{steps} steps per target, the authors' budget"
    return f"{steps} steps per target instead of their {paper.ATTACK_STEPS}"


def _targeted(prof: dict) -> str:
    """The rigorous attack's targeted passes, in words ('' for none)."""
    k = prof.get("attack_targets", 0)  # run.json files made before the setting lack it
    if not k:
        return ""
    return (
        f", with {k} passes targeted at the nearest classes beside the untargeted one "
        "(the smallest r kept)"
    )


def _protocol_section(frames: dict, protocol: str, prof: dict, claim_table) -> list[str]:
    steps = prof["paper_steps"] if protocol == "paper" else prof["attack_steps"]
    n = prof["paper_examples"] if protocol == "paper" else prof["attack_examples"]
    lines = [
        f"## Protocol '{protocol}'",
        "",
        PROTOCOL_TEXT[protocol].format(
            steps=steps, n=n or "all", budget=_budget(steps), targeted=_targeted(prof)
        ),
        "",
    ]
    att = frames[f"{protocol}/attacks"]
    cols = [
        "source",
        "n",
        "n_success",
        "success_rate",
        "distortion",
        "distortion_01",
        "median_l2",
        "already_wrong",
        "source_acc",
        "source_loss",
        *AUTHORS_COLUMNS,
    ]
    cols = [c for c in cols if c in att.columns and att[c].notna().any()]  # older tables lack some
    authors = (
        "; authors_*: the authors' notebook on their 10,000 validation images, the source's "
        "validation accuracy and loss"
        if AUTHORS_COLUMNS[0] in cols
        else ""
    )
    lines += [
        "**Attack sets** (distortion = mean sqrt(||r||^2/784) over successes, /126 scale; "
        "_01: on [0, 1] pixels; already_wrong: successes the source net misclassifies even "
        "without a perturbation"
        + ("; source_acc, source_loss: the source on the attacked split (loss: "
           "cross-entropy plus its eq. 6 penalty)" if "source_acc" in cols else "")
        + f"{authors})",
        "",
        _md(att[cols], index=False, floatfmt=".4f"),
        "",
    ]  # fmt: skip
    t2 = frames[f"{protocol}/table2"]
    for kind, label in (("bnn", "rho_init"), ("plain", "lambda")):
        cells = _cells(t2[t2.kind == kind], "source", "param")
        cells.columns = [f"{label} {c:g}" for c in cells.columns]
        lines += [f"**Table 2, {'BNNs' if kind == 'bnn' else 'baselines'}**", "", _md(cells), ""]
    t3 = frames[f"{protocol}/table3"]
    lines += [
        f"**Table 3: BNN (rho_init = {paper.TABLE3_RHO_INIT:g}) ensembles of N samples, "
        "accuracy averaged over 100/N runs** (the paper does not name its BNN; its N = 1 "
        f"average, 83.21, matches rho_init = {paper.TABLE3_RHO_INIT:g} in Table 2, 83.22)",
        "",
        _md(_cells(t3[t3.kind == "bnn"], "source", "N")),
        "",
    ]
    control = t3[t3.kind == "plain-ensemble"]
    if len(control):
        avg = control.groupby("N")["acc"].mean().rename("plain-net ensemble, avg of 12")
        bnn = t3[t3.kind == "bnn"].groupby("N")["acc"].mean().rename("BNN ensemble, avg of 12")
        lines += [
            "Control: ensembles of N independently trained plain FC-100-100-10 nets "
            "(lambda 0), disjoint groups from the pool:",
            "",
            _md(pd.concat([bnn, avg], axis=1).T),
            "",
        ]
    t4 = frames[f"{protocol}/table4"]
    for scope in ("global", "tensor"):
        label = (
            "over all weights (paper's text)"
            if scope == "global"
            else "within each tensor (authors' code)"
        )
        cells = _cells(t4[t4.scope == scope], "set", "rate")
        lines += [
            f"**Table 4: rho_init = {paper.TABLE4_RHO_INIT:g} BNN pruned by SNR {label}, "
            "100-sample ensembles**",
            "",
            _md(cells),
            "",
        ]
    if f"{protocol}/multiplier" in frames:
        mult = frames[f"{protocol}/multiplier"]
        pivot = mult.pivot_table(
            index=["kind", "param"], columns="multiplier", values="acc", sort=False
        ).reset_index()
        pivot.columns = [c if isinstance(c, str) else f"x {c:g}" for c in pivot.columns]
        lines += [
            "**Control: the same perturbations at every multiplier** (accuracy averaged over "
            "the 12 sets, failures dropped). The paper protocol scores BNNs at x 1.5 and "
            "baselines at x 3; this table shows each model at each multiplier.",
            "",
            _md(pivot, index=False),
            "",
        ]
    if f"{protocol}/noise" in frames:
        lines += _noise_section(frames[f"{protocol}/noise"])
    if f"{protocol}/fixednoise" in frames:
        lines += _fixed_noise_section(frames[f"{protocol}/fixednoise"], t2, frames["table1"])
    if f"{protocol}/whitebox" in frames:
        lines += _whitebox_section(frames[f"{protocol}/whitebox"])
    if f"{protocol}/transfer" in frames:
        lines += _transfer_section(frames[f"{protocol}/transfer"])
    lines += [
        f"**Headline claims ({protocol} protocol)**: the paper's three numbers recomputed "
        "from the tables above, every image and 100 weight draws; the last column says "
        "whether every seed's value is above 0. Verdicts come from the intervals below.",
        "",
        _md(claim_table, index=False),
        "",
    ]
    if f"{protocol}/intervals" in frames:
        table = frames[f"{protocol}/intervals"]
        lines += [
            f"**The claims as paired differences, with {100 * intervals.LEVEL:g}% intervals** "
            "(points of accuracy, per example on the same attacked images, averaged over the "
            f"sets; {'; '.join(dict.fromkeys(table['method']))}, see runs/study/intervals.py). "
            "BNN single samples average 10 draws, and a claim that picks the best model "
            "scores it on the half of each set's images that did not pick it, so these "
            "estimates differ from the headline table's. Verdict: 'holds' when the interval "
            "is above 0, 'fails' when below, else 'inconclusive':",
            "",
            _md(table, index=False),
            "",
        ]
    return lines


# the headline claims, found in each intervals table's claim names by the first of these
# phrases that they contain ({n}: the ensemble's size, as the name gives it)
CLAIMS = [
    ("with noise minus the deterministic BNN",
     "weight noise: best BNN with noise minus the deterministic BNN (sigma ~ 0)"),
    ("the deterministic BNN (rho_init",
     "the rest of BNN training: the deterministic BNN minus best plain net trained as the BNNs"),
    ("minus the plain-net ensemble", "{n}-sample ensemble minus the plain-net ensemble"),
    ("ensemble minus one sample", "{n}-sample ensemble minus one sample (rho_init -3)"),
    ("pruned BNN (global) minus best baseline trained as the BNNs",
     "75%-pruned BNN (rho_init -2) minus best plain net trained as the BNNs"),
    ("pruned BNN", "75%-pruned BNN (rho_init -2) minus best plain net"),
    ("adversarially trained", "best BNN minus the adversarially trained net"),
    ("trained as the BNNs", "best BNN minus best plain net trained as the BNNs"),
    ("best BNN", "best BNN minus best plain net"),
]  # fmt: skip
THREATS = {
    "paper": "transfer, paper protocol",
    "rigorous": "transfer, rigorous protocol",
    "whitebox": "white-box, worst case of an attack ensemble",
}
CONTROLS = tuple(intervals.CONTROL_CLAIMS)  # the controls' claims start with these
SIZE = re.compile(r"(?:both at|at) (x [\d.]+|(?:L2 |Linf )?eps [\d.]+)$")  # a claim's size


def _claim_rows(table: pd.DataFrame, threat: str, rules: dict | None) -> list[dict]:
    """An intervals table as rows (claim, threat, size, cell, verdict): each row's claim
    found by CLAIMS, its size read off its name, else the protocol's multipliers (rules:
    runs.study.protocols.PROTOCOL_RULES[protocol])."""
    rows = []
    for r in table.itertuples():
        found = SIZE.search(r.claim)
        if found:
            size = found.group(1)
        elif "ensemble minus one sample" in r.claim or r.claim.startswith(CONTROLS):
            size = f"x {rules['bnn_mult']:g}"  # scored at the BNN multiplier
        else:
            size = f"BNN x {rules['bnn_mult']:g}, plain x {rules['plain_mult']:g}"
        if r.claim.startswith(CONTROLS):  # a control's name is its label, less its size
            claim = SIZE.sub("", r.claim).rstrip(", ")
        else:
            label = next(label for phrase, label in CLAIMS if phrase in r.claim)
            claim = label.format(n=r.claim.split("-sample")[0])
        if size.startswith("BNN x") and rules["bnn_mult"] != rules["plain_mult"]:
            # the authors' unequal multipliers are not a size of the same comparison
            claim += f", BNN at x {rules['bnn_mult']:g} and plain at x {rules['plain_mult']:g}"
        cell = f"{r.estimate:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]"
        rows.append({"claim": claim, "threat": threat, "size": size, "cell": cell,
                     "verdict": r.verdict, "estimate": r.estimate, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "seeds": getattr(r, "seeds", 1)})  # fmt: skip
    return rows


def _summary(group: pd.DataFrame) -> str:
    """One claim under one threat model: 'holds', 'fails' or 'inconclusive' if every size
    agrees, else 'depends on size', each verdict with its sizes and intervals."""
    verdicts = list(dict.fromkeys(group["verdict"]))
    head = verdicts[0] if len(verdicts) == 1 else "depends on size"
    parts = [
        f"{v} at " + "; ".join(f"{r.size} {r.cell}" for r in group[group.verdict == v].itertuples())
        for v in verdicts
    ]
    return f"**{head}**: " + " / ".join(parts)


def verdict_frame(results: Path, protocols: list[str]) -> pd.DataFrame:
    """Every headline claim at every size, read back from the intervals CSVs under
    ``results`` (each protocol's, and runs/epsilon_curves.py's white-box one when present):
    rows (claim, threat, size, cell, verdict, estimate, ci_low, ci_high, seeds); empty if
    none. A cell over fewer seeds than the most any cell has names its count."""
    rows = []
    for protocol in protocols:
        csv = Path(results) / protocol / "intervals.csv"
        if csv.exists():
            rows += _claim_rows(pd.read_csv(csv), THREATS[protocol], PROTOCOL_RULES[protocol])
    whitebox = Path(results) / "rigorous" / "epsilon_intervals.csv"
    if whitebox.exists():
        rows += _claim_rows(pd.read_csv(whitebox), THREATS["whitebox"], None)
    most = max((r["seeds"] for r in rows), default=1)
    for r in rows:  # a cell over fewer seeds than the others says how many
        if r["seeds"] < most:
            r["cell"] += f" ({r['seeds']} seed{'s' * (r['seeds'] > 1)})"
    return pd.DataFrame(rows)


def verdict_table(frame: pd.DataFrame) -> str:
    """The claims x threat models markdown table of :func:`verdict_frame`'s rows."""
    order = list(dict.fromkeys(frame["claim"]))
    table = (
        frame.groupby(["claim", "threat"], sort=False)
        .apply(_summary, include_groups=False)
        .unstack("threat")
        .reindex(index=order, columns=[t for t in THREATS.values() if t in set(frame.threat)])
        .fillna("not measured")
    )
    return table.to_markdown()


def _verdict_section(results: Path, protocols: list[str], link: Path | str) -> list[str]:
    """The verdict per claim and threat model (linked as ``link``/..., the results folder
    as the report sees it), and claims.png beside it."""
    frame = verdict_frame(results, protocols)
    if frame.empty:
        return []
    plots.claims_forest(frame, Path(results) / "claims.png")
    whitebox = "epsilon_intervals.csv"
    source = (
        f" The white-box column is [{whitebox}]({link}/rigorous/{whitebox}), made "
        "by `python runs/epsilon_curves.py` (its command is in epsilon_curves.md); its best "
        "models are picked at each eps."
        if (Path(results) / "rigorous" / whitebox).exists()
        else " White-box intervals: not yet made (`python runs/epsilon_curves.py`)."
    )
    return [
        "## Verdict by threat model",
        "",
        "Each headline claim as a paired difference in points of accuracy, with its "
        f"{100 * intervals.LEVEL:g}% interval over seeds and images: 'holds' when the "
        "interval is above 0 (the first-named model is more robust), 'fails' when below (it "
        "is less robust), 'inconclusive' when it spans 0; "
        "'depends on size' when the verdict changes with the multiplier x of the transferred "
        "perturbation or with the white-box budget eps (/126 scale). Transfer columns: the "
        "12 source nets' attack sets, from the protocol sections below." + source,
        "",
        f"![the claims with their intervals]({link}/claims.png)",
        "",
        verdict_table(frame),
        "",
    ]


COVERAGE_LINK = intervals.COVERAGE  # python -m runs.study.intervals; README.md links it so
COVERAGE = Path(__file__).resolve().parents[2] / COVERAGE_LINK
README_MARKS = ("<!-- verdict: made by python -m runs.study.report -->", "<!-- /verdict -->")
KIND_LABELS = {  # how the report names each kind of model (runs.study.tables.Zoo)
    "bnn": "BNN rho_init",
    "bnn-mu": "BNN posterior mean, rho_init",
    "fixed-sigma": "BNN with sigma held, rho_init",
    "noise-only": "noise-only net, rho_init",
    "plain": "plain lambda",
    "plain-matched": "plain trained as the BNNs, lambda",
}
AUTHORS_COLUMNS = ("authors_success_rate", "authors_distortion", "authors_val_acc",
                   "authors_val_loss")  # fmt: skip
TIMES_MARKS = ("<!-- wall times: made by python -m runs.study.report -->", "<!-- /wall times -->")


def readme_verdict(results: Path, link: str) -> str:
    """The README's verdict: the run that made it (from run.json), the claims figure and
    the verdict table, all read from ``results`` (linked as ``link``)."""
    info = json.loads((Path(results) / "run.json").read_text())
    frame = verdict_frame(results, info["protocols"])
    train = sum(sum(seeds.values()) for seeds in info["compute_seconds"].values())
    seeds = info["seeds"]
    methods = sorted(
        set(pd.concat(pd.read_csv(p) for p in Path(results).glob("*/*intervals.csv"))["method"])
    )
    sim = pd.read_csv(COVERAGE)
    sim = sim[sim["seeds"] == len(seeds)]
    coverage = (
        f"by simulation it covers a known difference in {sim['coverage'].min():.3f}-"
        f"{sim['coverage'].max():.3f} of trials at {len(seeds)} seed"
        f"{'s' * (len(seeds) > 1)}, across the scenarios of `python -m runs.study.intervals`"
        if len(sim)
        else f"its coverage at {len(seeds)} seeds has not been simulated"
    )
    commits = info.get("seed_commits", {})
    by_commit = (
        " (run at commits " + ", ".join(f"{s}: {c}" for s, c in commits.items()) + ")"
        if len(set(commits.values())) > 1
        else ""
    )
    return "\n".join([
        f"Made by `{info['command']}` (commit {info['commit']}, {info['date']}; "
        f"{info['machine']}): profile "
        f"**{info['profile']['name']}**, {len(seeds)} seed{'s' * (len(seeds) > 1)} "
        f"({', '.join(map(str, seeds))}){by_commit}, "
        f"{train / 3600:.1f} h of compute summed over workers; intervals: "
        f"{'; '.join(methods)} ({coverage}, [{COVERAGE.name}]({COVERAGE_LINK})). Verdicts: "
        "each claim is model A minus model B; 'holds' when the 95% interval lies above 0 "
        "(A more robust), 'fails' when below (A less robust), 'inconclusive' when it spans "
        "0.",
        "",
        f"![the claims with their intervals]({link}/claims.png)",
        "",
        verdict_table(frame),
        "",
        _readme_caveats(results, info, sim, frame),
    ])  # fmt: skip


def _readme_caveats(results: Path, info: dict, sim: pd.DataFrame, frame: pd.DataFrame) -> str:
    """What the verdict table cannot say yet, from the seed count, the simulated coverage
    at that count (``sim``), the cells of :func:`verdict_frame` and whether the white-box
    intervals exist."""
    n, out, cells = len(info["seeds"]), [], len(frame)
    if n == 1:
        out.append(
            "With one seed the interval covers the test images' noise only, not the training "
            "seed's (its simulated coverage is in the line above): read each verdict as "
            "provisional until three seeds are in."
        )
    elif n == 2 and len(sim):
        out.append(
            "With two seeds the seed part of each interval has one degree of freedom, so the "
            f"intervals are wide (simulated coverage {sim['coverage'].min():.2f}-"
            f"{sim['coverage'].max():.2f}, above) and 'inconclusive' is the expected verdict "
            "for small effects; a third seed narrows them."
        )
    if n > 2 and (frame["seeds"] == 2).any():
        two = pd.read_csv(COVERAGE).query("seeds == 2")["coverage"]
        spread = {f"{two.min():.2f}", f"{two.max():.2f}"}
        out.append(
            "A cell marked '(2 seeds)' rests on two of the run's seeds (a claim added after "
            "one seed's nets were gone): its seed part has one degree of freedom, so the "
            f"interval is wide (simulated coverage {'-'.join(sorted(spread))} at two seeds) and"
            " 'inconclusive' is the expected verdict for small effects."
        )
    if n > 1 and (frame["seeds"] == 1).any():
        one = pd.read_csv(COVERAGE).query("seeds == 1")["coverage"]
        out.append(
            "A cell marked '(1 seed)' rests on one training seed (a claim or attack added "
            "after the other seeds' nets were gone): its interval counts the images alone, "
            f"which by simulation covers as little as {one.min():.2f} where seeds vary, so "
            "read it as provisional."
        )
    out.append(
        f"Each cell says only where its interval lies. The table holds {cells} intervals, "
        f"each at {100 * intervals.LEVEL:g}% with no correction for multiplicity: where "
        f"every difference were 0, up to about {round(cells * (1 - intervals.LEVEL))} of them "
        "would still read 'holds' or 'fails'."
    )
    rigorous = Path(results) / "rigorous"
    if (rigorous / "epsilon_intervals.csv").exists():
        out.append(_sweep_caveat(rigorous))
    if not (Path(results) / "rigorous" / "epsilon_intervals.csv").exists():
        out.append(
            "The white-box column joins the table once `python runs/epsilon_curves.py "
            f"--profile {info['profile']['name']}` has run on these nets; it has not run on "
            "them yet."
        )
    return " ".join(out)


def _sweep_caveat(rigorous: Path) -> str:
    """How much of the white-box column the convergence sweep of runs/epsilon_curves.py
    checked: models and (norm, eps) pairs swept, and the curves flat at the budget used."""
    flat = [pd.read_csv(p) for p in sorted(rigorous.glob("epsilon_flatness_seed*_n*.csv"))]
    if not flat:
        return "No convergence sweep has checked the white-box budget on these nets yet."
    flat = pd.concat(flat)
    steep = flat[~flat["flat"]]
    models = pd.read_csv(rigorous / "epsilon_curves.csv")["model"].nunique()
    return (
        f"The white-box budget's convergence sweep (epsilon_flatness_seed*_n*.csv) covers "
        f"{flat['model'].nunique()} of the {models} models attacked, at "
        f"{len(flat.groupby(['norm', 'eps_126']))} (norm, eps) pairs: {int(flat['flat'].sum())}"
        f" of its {len(flat)} curves are flat at the budget used"
        + (
            "." if steep.empty else
            "; not flat: " + ", ".join(sorted(set(steep["model"] + " (" + steep["varied"] + ")")))
            + "."
        )
    )  # fmt: skip


def wall_times(root: Path) -> pd.DataFrame:
    """One row per ``runs/results*/run.json`` under ``root``: the command, device, machine,
    date and commit, the wall time of that invocation (hours; short where it reused
    artifacts of earlier ones) and, per seed, the compute its artifacts recorded (hours
    summed over worker processes: what a run from scratch spends)."""
    rows = []
    for path in sorted(Path(root).glob("runs/results*/run.json")):
        info = json.loads(path.read_text())
        per_seed: dict[str, float] = {}
        for by_seed in info.get("compute_seconds", {}).values():
            for seed, seconds in by_seed.items():
                per_seed[seed] = per_seed.get(seed, 0.0) + seconds
        rows.append({
            "results": f"{path.parent.relative_to(root).as_posix()}/",
            "command": info["command"],
            "device, machine": f"{info.get('device', 'cpu')}; {info['machine']}",
            "date, commit": f"{info['date']}, {info['commit']}",
            "this command (h)": round(info["total_seconds"] / 3600, 2),
            "compute per seed (h)": "; ".join(
                f"seed {seed}: {per_seed[seed] / 3600:.2f}" for seed in sorted(per_seed, key=int)
            ) or "-",
        })  # fmt: skip
    return pd.DataFrame(rows)


def readme_times(root: Path) -> str:
    """The README's wall-time table: :func:`wall_times` with each command in code marks."""
    frame = wall_times(root)
    if frame.empty:
        return "No results folder has a run.json yet."
    frame["command"] = "`" + frame["command"] + "`"
    return frame.to_markdown(index=False, floatfmt=".2f")


APPROX_MARKS = ("<!-- approximations: made by python -m runs.study.report -->",
                "<!-- /approximations -->")  # fmt: skip
APPROXIMATIONS = "runs/results/approximations"  # runs/approximations.py's FC-10 results
APPROX_POINTS = ("white-box L2 eps 1", "white-box Linf eps 0.05", "transfer x1")


def readme_approximations(folder: Path, link: str) -> str:
    """The README's table of runs/approximations.py: per method its clean accuracy, NLL,
    robust accuracy at APPROX_POINTS and, at the two white-box points, its difference from
    the plain net and from HMC, and at the first its difference from its own mean-weights
    net (what sampling adds), each with its interval and verdict, all read from ``folder``
    (linked as ``link``)."""
    folder = Path(folder)
    table = pd.read_csv(folder / "approximations.csv", index_col="method")
    claims = pd.read_csv(folder / "approximations_intervals.csv").set_index("claim")
    saved = [json.loads(p.read_text()) for p in sorted(folder.glob("seeds/*/seed.json"))]
    rows = []
    for method, r in table.iterrows():
        row = {"method": method, "clean acc": f"{r['acc']:.1f}", "NLL": f"{r['nll']:.3f}"}
        row |= {point.removeprefix("white-box "): f"{r[point]:.1f}" for point in APPROX_POINTS}
        for against, points in (("plain", APPROX_POINTS[:2]), ("hmc", APPROX_POINTS[:2]),
                                (f"{method}-mu", APPROX_POINTS[:1])):  # fmt: skip
            for point in points:
                key = f"{method} minus {against}, {point}"
                c = claims.loc[key] if key in claims.index else None
                label = "minus its mean weights" if against.endswith("-mu") else f"minus {against}"
                row[f"{label}, {point.removeprefix('white-box ')}"] = (
                    "-" if c is None else
                    f"{c['estimate']:+.1f} [{c['ci_low']:+.1f}, {c['ci_high']:+.1f}] {c['verdict']}"
                )  # fmt: skip
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame = frame.loc[:, (frame != "-").any()]  # no HMC column before its chains are in
    commands = "; ".join(f"`{c}`" for c in dict.fromkeys(info["command"] for info in saved))
    return "\n".join([
        f"Made by {commands} (seeds: {', '.join(str(i['seed']) for i in saved)}); accuracy "
        "in %, differences in points with their 95% interval over images (and seeds where "
        f"there are several); every rule, score and eps in [approximations.md]({link}/"
        f"approximations.md), the curves in [approximations.png]({link}/approximations.png).",
        "",
        frame.to_markdown(index=False, disable_numparse=True),
    ])  # fmt: skip


def _rewrite(text: str, marks: tuple[str, str], block: str, readme: Path) -> str:
    """``text`` with the lines between ``marks`` replaced by ``block``."""
    start, end = marks
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} block to rewrite")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{block}\n{end}{rest.split(end, 1)[1]}"


def update_readme(readme: Path, results: Path, root: Path | None = None) -> None:
    """Rewrite the blocks between README_MARKS (:func:`readme_verdict` of ``results``) and
    TIMES_MARKS (:func:`readme_times` of ``root``, default the README's folder) in
    ``readme``."""
    readme = Path(readme)
    link = Path(os.path.relpath(Path(results).resolve(), readme.resolve().parent))
    text = _rewrite(readme.read_text(), README_MARKS, readme_verdict(results, link.as_posix()),
                    readme)  # fmt: skip
    text = _rewrite(text, TIMES_MARKS, readme_times(root or readme.parent), readme)
    approx = Path(root or readme.parent) / APPROXIMATIONS
    if APPROX_MARKS[0] in text and approx.exists():
        link = os.path.relpath(approx.resolve(), readme.resolve().parent)
        text = _rewrite(text, APPROX_MARKS, readme_approximations(approx, link), readme)
    atomic_write(readme, lambda tmp: tmp.write_text(text))


def _sigma_section(sigma: pd.DataFrame) -> list[str]:
    """How far training moved each BNN's sigma from softplus(rho_init), per rho_init: the
    extremes over the net's parameter tensors."""
    by_rho = sigma.groupby("param", sort=False).agg(
        sigma_init=("sigma_init", "first"),
        median_ratio_min=("median_ratio", "min"),
        median_ratio_max=("median_ratio", "max"),
        pct_moved_max=("pct_moved", "max"),
    )
    return [
        "**How far sigma moved in training.** Per rho_init, over the net's six parameter "
        "tensors: the smallest and largest ratio of the median sigma to softplus(rho_init), "
        "and the largest % of weights whose sigma moved by more than 10% (per tensor in "
        "sigma.csv):",
        "",
        _md(
            by_rho.reset_index().rename(columns={"param": "rho_init"}), index=False, floatfmt=".4g"
        ),
        "",
    ]


def _controls_section(t1: pd.DataFrame, gaps: pd.DataFrame | None) -> list[str]:
    """The controls' clean test accuracy, and every model's top-two logit gaps."""
    lines = []
    part = t1[~t1.kind.isin(["bnn", "plain"]) & (t1.split == "test")]
    if not part.empty:
        lines += [
            "**The controls that isolate weight sampling, clean** (test split): each BNN's "
            "posterior mean (bnn-mu), the BNN trained with sigma held at softplus(rho_init) "
            "(fixed-sigma), the same with no KL term (noise-only), and the plain nets trained "
            "as the BNNs are (plain-matched):",
            "",
            _md(part[["kind", "param", "acc", "nll", "ece"]], index=False, floatfmt=".4g"),
            "",
        ]
    if gaps is not None:
        lines += [
            "**Top-two logit gaps on the test images** (logit_gaps.csv). Beyond "
            f"{tables.UNDERFLOW_GAP:.1f} every other class's float32 probability underflows, "
            "so an attack loss on clamped probabilities gets no gradient; the white-box "
            "attacks here use log-probabilities computed by logsumexp:",
            "",
            _md(gaps, index=False, floatfmt=".4g"),
            "",
        ]
    return lines


def _fixed_noise_section(fixed: pd.DataFrame, t2: pd.DataFrame, t1: pd.DataFrame) -> list[str]:
    """The fixed-noise control beside the BNN of the same rho_init: clean test accuracy
    and the mean over the 12 sets."""
    sets = fixed[fixed.source != "clean"].groupby("param", sort=False)["acc"].mean()
    bnn = t2[t2.kind == "bnn"].groupby("param", sort=False)["acc"].mean()
    clean = fixed[fixed.source == "clean"].set_index("param")["acc"]
    bnn_clean = t1[(t1.kind == "bnn") & (t1.split == "test")].set_index("param")["acc"]
    table = pd.DataFrame(
        {
            "clean, fixed-noise net": clean,
            "clean, BNN": bnn_clean,
            "12 sets, fixed-noise net": sets,
            "12 sets, BNN": bnn,
        }
    )
    return [
        "**Control: the lambda = 0 plain net with fixed weight noise N(0, softplus(rho_init)^2)** "
        "at test time, one fresh draw per prediction, scored like the BNN of that rho_init "
        "(clean: test split; sets: mean accuracy over the 12 sets; per set in fixednoise.csv):",
        "",
        _md(
            table.reset_index().rename(columns={"index": "rho_init", "param": "rho_init"}),
            index=False,
        ),
        "",
    ]


def _noise_section(noise: pd.DataFrame) -> list[str]:
    """The noise control's accuracies (averaged over the sets) and, per set, the noise's
    L2 norm inside the pixel box beside the perturbations' (medians)."""
    acc = noise.groupby(["kind", "param"], sort=False)[["acc_adv", "acc_noise"]].mean()
    norms = noise.groupby("source", sort=False)[
        ["l2_intended", "l2_achieved", "l2_ratio", "n_unreachable"]
    ].first()
    return [
        "**Control: Gaussian noise with each example's adversarial L2 norm** (averages over "
        "the 12 sets). The noise is scaled per example so that what is left after clipping to "
        "the pixel box has the perturbation's norm:",
        "",
        _md(acc.reset_index(), index=False),
        "",
        "Norms per set (medians over the examples with r != 0; l2_ratio: median of achieved / "
        "intended; n_unreachable: examples whose box cannot hold noise of that norm):",
        "",
        _md(norms.reset_index(), index=False, floatfmt=".4f"),
        "",
    ]


def _transfer_section(sweep: pd.DataFrame) -> list[str]:
    """Transfer at every multiple of r: the 12 source nets' sets (mean over them) with the
    best BNN minus the best baseline per multiple, and reverse transfer from the
    FC-100-100-10 models' own white-box sets at x1 and x2."""
    own = sweep.source.str.startswith(paper.TABLE1_ARCH + "_")
    model = [f"{KIND_LABELS.get(k, k)} {p:g}" for k, p in zip(sweep.kind, sweep.param)]
    sweep = sweep.assign(model=model)
    fwd = sweep[~own].pivot_table(index="model", columns="multiplier", values="acc", sort=False)
    kinds = sweep[~own].groupby("model", sort=False)["kind"].first().reindex(fwd.index)
    best = {kind: fwd[kinds == kind].max() for kind in ("bnn", "plain", "plain-matched")}
    for kind, name in (("plain", "best plain net"),
                       ("plain-matched", "best plain net trained as the BNNs")):  # fmt: skip
        if (kinds == kind).any():
            fwd.loc[f"best BNN minus {name}"] = best["bnn"] - best[kind]
    fwd.columns = [f"x {m:g}" for m in fwd.columns]
    lines = [
        "**Transfer at every size.** Accuracy on x + m r, clipped to the pixel box, for every "
        "multiple m of the source's perturbation, every example counted (BNNs: single sample, "
        "mean of 10 runs). From the 12 source nets' sets (mean over the sets):",
        "",
        _md(fwd),
        "",
    ]
    for mult in (1.0, 2.0):
        part = sweep[own & (sweep.multiplier == mult) & sweep.kind.isin(["bnn", "plain"])]
        rev = part.pivot_table(index="source", columns="model", values="acc", sort=False)
        lines += [
            f"Reverse transfer at x {mult:g}: rows are the set made by attacking that "
            "FC-100-100-10 model white-box (its first examples of the test split), columns "
            "the BNN or plain net scored on it (the controls are in transfer.csv); the "
            "diagonal is white-box:",
            "",
            _md(rev),
            "",
        ]
    return lines


def _whitebox_section(wb: pd.DataFrame) -> list[str]:
    """The white-box table: per model, the attack's success rate and median L2, and the
    accuracy curve over multiples of each example's r."""
    keys = ["kind", "attack", "param"]
    attack = wb.groupby(keys, sort=False)[["n", "success_rate", "median_l2"]].first()
    curve = wb.pivot_table(index=keys, columns="multiplier", values="acc", sort=False)
    curve.columns = [f"acc x {m:g}" for m in curve.columns]
    table = attack.join(curve).reset_index()
    return [
        "**White-box attacks on the FC-100-100-10 models themselves** (EOT over k weight "
        "samples per step for BNNs, success judged over fresh passes; the rigorous attack "
        "for baselines): how large a perturbation each needs, and the accuracy at x + m r "
        "(clipped to the pixel box) for multiples m of each example's own minimum-norm r. "
        "Accuracy is over the examples the attack succeeded on; the examples it failed on "
        "are left out, not counted as clean (success_rate says how many were scored). At "
        "m = 1 the perturbation sits on the boundary, where a fresh weight sample is often "
        "right again; read the curve, not that point alone.",
        "",
        _md(table, index=False, floatfmt=".4g"),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Rewrite README.md's verdict block from a results folder's CSVs."
    )
    parser.add_argument("--results", default="runs/results-hour", help="results folder")
    parser.add_argument("--readme", default="README.md", help="the README to rewrite")
    args = parser.parse_args(argv)
    update_readme(Path(args.readme), Path(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
