"""runs/intervals.py: bootstrap replicates over examples, and the two-stage interval over
seeds, on differences whose spread is known."""

import math

import pandas as pd
import pytest
import torch

from runs import intervals


def test_replicates_spread_like_the_standard_error_of_the_mean():
    g = torch.Generator().manual_seed(0)
    sets = [torch.randn(4000, generator=g, dtype=torch.float64) + 0.3 for _ in range(4)]
    reps = intervals._replicates(sets, 2000, torch.Generator().manual_seed(1))
    expected_se = 1 / math.sqrt(4000) / math.sqrt(4)  # 4 sets of 4000, unit variance
    assert float(reps.std()) == pytest.approx(expected_se, rel=0.1)
    assert float(reps.mean()) == pytest.approx(
        float(torch.stack([s.mean() for s in sets]).mean()), abs=3e-3
    )
    constant = intervals._replicates([torch.full((50,), 0.25)], 10, torch.Generator())
    assert torch.equal(constant, torch.full((10,), 0.25, dtype=torch.float64))


def _seed_frame(centre: float, spread: float, reps: int, seed: int) -> pd.DataFrame:
    g = torch.Generator().manual_seed(seed)
    diffs = centre + spread * torch.randn(reps, generator=g, dtype=torch.float64)
    return pd.DataFrame(
        {"claim": "c", "estimate": centre, "rep": range(reps), "diff": diffs.tolist()}
    )


def test_interval_holds_fails_or_is_inconclusive_by_where_it_lies():
    holds = intervals.summarise([_seed_frame(2.0, 0.5, 2000, s) for s in range(3)]).iloc[0]
    assert holds["verdict"] == "holds" and holds["ci_low"] > 0 and holds["seeds"] == 3
    assert holds["estimate"] == pytest.approx(2.0)
    fails = intervals.summarise([_seed_frame(-2.0, 0.5, 2000, s) for s in range(3)]).iloc[0]
    assert fails["verdict"] == "fails" and fails["ci_high"] < 0


def test_seeds_that_disagree_widen_the_interval():
    """Examples alone would give +-0.2 around each seed; seeds at -1 and +3 span 0."""
    agree = intervals.summarise([_seed_frame(1.0, 0.1, 2000, s) for s in range(3)]).iloc[0]
    split = [_seed_frame(c, 0.1, 2000, s) for s, c in enumerate((-1.0, 1.0, 3.0))]
    wide = intervals.summarise(split).iloc[0]
    assert wide["estimate"] == pytest.approx(1.0) and agree["estimate"] == pytest.approx(1.0)
    assert agree["ci_high"] - agree["ci_low"] < 0.3
    assert wide["ci_low"] < 0 < wide["ci_high"] and wide["verdict"] == "inconclusive"
