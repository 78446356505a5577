"""The paper's headline claims, recomputed from our tables, per seed and over seeds."""

from __future__ import annotations

import pandas as pd

from . import paper

__all__ = ["claims", "claims_over_seeds"]


def claims(frames: dict[str, pd.DataFrame], protocol: str) -> list[dict]:
    """The paper's three headline numbers under one protocol, as rows of (claim, paper,
    ours) in points of accuracy; under the paper protocol also the first claim with both
    kinds of model scored at the same multiplier."""
    t2 = frames[f"{protocol}/table2"]
    avg = t2.groupby(["kind", "param"])["acc"].mean()
    best_plain = avg["plain"].max()
    out = [
        {
            "claim": "best BNN beats best baseline on the 12 sets (Table 2 averages)",
            "paper": paper.CLAIMS["bnn_beats_baselines"],
            "ours": avg["bnn"].max() - best_plain,
        }
    ]
    t3 = frames[f"{protocol}/table3"]
    t3 = t3[t3.kind == "bnn"].groupby("N")["acc"].mean()
    out.append(
        {
            "claim": f"ensemble of N={t3.index.max()} adds over N=1 (Table 3 averages)",
            "paper": paper.CLAIMS["ensemble_gain"],
            "ours": t3.iloc[-1] - t3.iloc[0],
        }
    )
    t4 = frames[f"{protocol}/table4"]
    t4 = t4[~t4.set.isin(["val", "test"]) & (t4.rate == 0.75)]
    for scope, group in t4.groupby("scope"):
        out.append(
            {
                "claim": f"75%-pruned BNN ({scope} ranking) beats best baseline",
                "paper": paper.CLAIMS["pruned75_beats_baselines"],
                "ours": group["acc"].mean() - best_plain,
            }
        )
    if f"{protocol}/multiplier" in frames:  # the first claim with one multiplier for both
        mult = frames[f"{protocol}/multiplier"]
        for m, part in mult.groupby("multiplier"):
            avg = part.groupby(["kind", "param"])["acc"].mean()
            out.insert(
                1,
                {
                    "claim": f"... the same, both scored at x {m:g}",
                    "paper": None,
                    "ours": avg["bnn"].max() - avg["plain"].max(),
                },
            )
    return out


def claims_over_seeds(
    per_seed: list[dict[str, pd.DataFrame]], seeds: list[int], protocol: str
) -> pd.DataFrame:
    """The headline claims per seed, their mean and spread, and whether every seed's value
    is above 0 (a sign, not a verdict: the verdicts are the intervals')."""
    runs = [claims(frames, protocol) for frames in per_seed]
    rows = []
    for i, claim in enumerate(runs[0]):
        values = pd.Series([run[i]["ours"] for run in runs])
        row = {"claim": claim["claim"], "paper": claim["paper"], "ours": values.mean()}
        if len(seeds) > 1:
            row["sd over seeds"] = values.std()
            row |= {f"seed {s}": v for s, v in zip(seeds, values)}
        above = "yes" if (values > 0).all() else "no" if (values <= 0).all() else "mixed"
        row["every seed above 0"] = above
        rows.append(row)
    return pd.DataFrame(rows)
