"""The headline claims as paired differences with 95% bootstrap intervals over examples
and seeds (issue 11).

Per seed, each claim is a mean over the attack sets of a per-example paired difference:
the mean correctness (over weight draws) of one model minus another's on the same
example. Its bootstrap replicates resample each set's examples with replacement. Over
seeds, each replicate draws the seeds with replacement and averages one replicate of
each drawn seed (a two-stage bootstrap), so the interval holds both sources of spread.
The best BNN and the best baseline are chosen per seed by their mean accuracy over the
sets, as in :mod:`runs.claims`; that choice is not resampled.
"""

from __future__ import annotations

import functools

import pandas as pd
import torch

from pyro_bnn.data import MNIST
from pyro_bnn.evaluate import as_probs
from pyro_bnn.predict import ensemble_fn, single_sample_fn
from pyro_bnn.pruning import prune

from . import paper
from .tables import AttackSet, Zoo

__all__ = ["LEVEL", "REPLICATES", "claim_replicates", "replicate_rows", "summarise"]

REPLICATES = 1000  # bootstrap replicates per seed and claim
LEVEL = 0.95
SWEEP = (1.0, 1.5, 2.0, 3.0)  # multiples of r at which BNNs and baselines meet (both)
_CHUNK = 100  # replicates resampled at once: (_CHUNK, N) indices


@torch.no_grad()
def _correct(fn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) mean correctness of ``fn``'s predictions, over its runs if it makes several."""
    probs = fn(x)  # (N, C) or (R, N, C)
    hits = (probs.argmax(-1) == y).double()
    return (hits if hits.dim() == 1 else hits.mean(0)).cpu()


def _replicates(diffs: list[torch.Tensor], reps: int, generator) -> torch.Tensor:
    """(reps,) bootstrap replicates of the mean over sets of each set's mean difference,
    each set's examples resampled with replacement."""
    out = torch.zeros(reps, dtype=torch.float64)
    for d in diffs:  # d: (N,) one set's paired differences
        for i in range(0, reps, _CHUNK):
            n = min(_CHUNK, reps - i)
            idx = torch.randint(len(d), (n, len(d)), generator=generator)  # (n, N)
            out[i : i + n] += d[idx].mean(1)
    return out / len(diffs)


def _best(scores: dict) -> list[torch.Tensor]:
    """The per-set correctness of the model with the highest mean accuracy over the sets."""
    return max(scores.values(), key=lambda per_set: sum(float(c.mean()) for c in per_set))


def claim_replicates(
    zoo: Zoo,
    sets: list[AttackSet],
    data: MNIST,
    runs: int,
    rules: dict,
    seed: int,
    ensemble: int = 100,
    reps: int = REPLICATES,
) -> pd.DataFrame:
    """One seed's paired differences (points of accuracy) for every headline claim, with
    ``reps`` bootstrap replicates each: rows (claim, estimate, rep, diff).

    Claims: the best BNN minus the best baseline at the protocol's multipliers and with
    both at each multiple in SWEEP; Table 3's ``ensemble``-sample mean minus one sample; Table
    4's 75%-pruned BNN (global ranking) minus the best baseline.

    :param runs: single-sample predictions averaged per example.
    :param rules: the protocol's rules (runs.protocols.PROTOCOL_RULES): multipliers, whether
        failures count, whether x + m r is clipped to the pixel box.
    :param seed: seeds the resampling.
    :param ensemble: weight samples in the ensemble of the second claim (Table 3's largest).
    """
    b_mult, p_mult = rules["bnn_mult"], rules["plain_mult"]
    points = {
        m: [s.eval_set(data, m, rules["keep_failures"], rules["clip"]) for s in sets]
        for m in {b_mult, p_mult, *SWEEP}
    }  # multiplier -> [(x, y)] per set

    @functools.cache
    def single(rho: float, m: float) -> list[torch.Tensor]:
        bnn, guide = zoo.bnns[rho]
        return [_correct(single_sample_fn(bnn, guide, runs), x, y) for x, y in points[m]]

    @functools.cache
    def plain(lam: float, m: float) -> list[torch.Tensor]:
        return [_correct(as_probs(zoo.plains[lam]), x, y) for x, y in points[m]]

    def best_minus_best(bm: float, pm: float) -> list[torch.Tensor]:
        best_bnn = _best({rho: single(rho, bm) for rho in zoo.bnns})
        best_plain = _best({lam: plain(lam, pm) for lam in zoo.plains})
        return [a - b for a, b in zip(best_bnn, best_plain)]

    claims = {}
    if (b_mult, p_mult) != (1.0, 1.0):
        name = f"best BNN (x {b_mult:g}) minus best baseline (x {p_mult:g})"
        claims[name] = best_minus_best(b_mult, p_mult)
    for m in SWEEP:
        claims[f"best BNN minus best baseline, both at x {m:g}"] = best_minus_best(m, m)
    bnn, guide = zoo.bnns[paper.TABLE3_RHO_INIT]
    mean_of = ensemble_fn(bnn, guide, ensemble, runs=1)
    claims[f"{ensemble}-sample ensemble minus one sample (Table 3's BNN)"] = [
        _correct(mean_of, x, y) - one
        for (x, y), one in zip(points[b_mult], single(paper.TABLE3_RHO_INIT, b_mult))
    ]
    bnn, guide = zoo.bnns[paper.TABLE4_RHO_INIT]
    pruned = ensemble_fn(bnn, prune(bnn, guide, 0.75, "global"), 100, runs=1)
    best_plain = _best({lam: plain(lam, p_mult) for lam in zoo.plains})
    claims["75%-pruned BNN (global) minus best baseline"] = [
        _correct(pruned, x, y) - b for (x, y), b in zip(points[b_mult], best_plain)
    ]
    return replicate_rows(claims, reps, seed)


def replicate_rows(claims: dict[str, list[torch.Tensor]], reps: int, seed: int) -> pd.DataFrame:
    """Rows (claim, estimate, rep, diff) in points of accuracy: each claim's estimate, the
    mean over its sets of the mean paired difference, and ``reps`` bootstrap replicates.

    :param claims: claim -> one (N,) tensor of per-example paired differences per set.
    :param seed: seeds the resampling.
    """
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for name, diffs in claims.items():
        estimate = 100 * float(torch.stack([d.mean() for d in diffs]).mean())
        for rep, value in enumerate(100 * _replicates(diffs, reps, generator)):
            rows.append({"claim": name, "estimate": estimate, "rep": rep, "diff": float(value)})
    return pd.DataFrame(rows)


def summarise(per_seed: list[pd.DataFrame], seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Each claim's mean estimate over seeds and its two-stage bootstrap interval, with a
    verdict: 'holds' (interval above 0), 'fails' (below 0) or 'inconclusive'."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for claim, _ in per_seed[0].groupby("claim", sort=False):
        reps = torch.stack(
            [torch.from_numpy(f[f.claim == claim]["diff"].to_numpy(copy=True)) for f in per_seed]
        )  # (seeds, R)
        n_seeds, n_reps = reps.shape
        pick_seed = torch.randint(n_seeds, (n_reps, n_seeds), generator=generator)
        pick_rep = torch.randint(n_reps, (n_reps, n_seeds), generator=generator)
        boot = reps[pick_seed, pick_rep].mean(1)  # (R,)
        low, high = (
            float(v)
            for v in boot.quantile(
                torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=boot.dtype)
            )
        )
        estimate = sum(float(f[f.claim == claim]["estimate"].iloc[0]) for f in per_seed) / n_seeds
        verdict = "holds" if low > 0 else "fails" if high < 0 else "inconclusive"
        rows.append(
            {"claim": claim, "estimate": estimate, "ci_low": low, "ci_high": high,
             "seeds": n_seeds, "verdict": verdict}
        )  # fmt: skip
    return pd.DataFrame(rows)
