"""runs/study/intervals.py: the per-image linearisation, the interval over seeds and images, and
its coverage of a known true difference, by simulation."""

import pandas as pd
import pytest
import torch

from runs.study import intervals


def test_one_full_set_linearises_to_the_standard_error_of_the_mean():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(1, 500, generator=g, dtype=torch.float64) + 0.3  # (K=1, P)
    estimate, u = intervals.linearise(d, torch.ones_like(d, dtype=torch.bool))
    assert float(estimate) == pytest.approx(float(d.mean()))
    assert float(u.sum()) == pytest.approx(0.0, abs=1e-12)
    assert float(500 * u.var()) == pytest.approx(float(d.var() / 500), rel=1e-9)


def test_an_image_in_two_sets_is_one_unit():
    """Image 0 sits below its first set's mean and above its second's by as much: its
    shares cancel, so drawing it again cannot move the estimate."""
    diff = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)  # (K, P)
    mask = torch.tensor([[True, True, False], [True, False, True]])
    estimate, u = intervals.linearise(diff, mask)
    assert float(estimate) == pytest.approx(0.5)
    torch.testing.assert_close(u, torch.tensor([0.0, 0.125, -0.125], dtype=torch.float64))


def test_empty_sets_are_left_out():
    diff = torch.tensor([[2.0, 4.0], [9.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [False, False]])
    estimate, _ = intervals.linearise(diff, mask)
    assert float(estimate) == pytest.approx(3.0)


@pytest.mark.parametrize("scenario", list(intervals.SCENARIOS))
@pytest.mark.parametrize("n_seeds", [3, 5])
def test_nominal_95_covers_a_known_difference_at_least_93_percent(scenario, n_seeds):
    """1,000 simulated studies each; at a true 95% the count falls below 930 with
    probability under 0.2%."""
    out = intervals.coverage(n_seeds, trials=1000, **intervals.SCENARIOS[scenario])
    assert out["coverage"] >= 0.93, out


def test_the_simulation_catches_an_interval_that_ignores_the_seeds():
    """One seed's interval counts the images alone: where seeds vary it covers far less."""
    out = intervals.coverage(1, trials=500, **intervals.SCENARIOS["seeds dominate"])
    assert out["coverage"] < 0.5


def _seed_frame(centre: float, spread: float, n: int, seed: int) -> pd.DataFrame:
    g = torch.Generator().manual_seed(seed)
    diff = (centre + spread * torch.randn(n, generator=g, dtype=torch.float64)) / 100
    return intervals.claim_rows({"c": [(torch.arange(n), diff)]}, n)


def test_interval_holds_fails_or_is_inconclusive_by_where_it_lies():
    holds = intervals.summarise([_seed_frame(2.0, 5.0, 2000, s) for s in range(3)]).iloc[0]
    assert holds["verdict"] == "holds" and holds["ci_low"] > 0 and holds["seeds"] == 3
    assert holds["estimate"] == pytest.approx(2.0, abs=0.3)
    assert holds["method"] == intervals.METHOD
    fails = intervals.summarise([_seed_frame(-2.0, 5.0, 2000, s) for s in range(3)]).iloc[0]
    assert fails["verdict"] == "fails" and fails["ci_high"] < 0


def test_seeds_that_disagree_widen_the_interval_by_students_t():
    """Examples alone would give about +-0.2 around each seed; seeds at -1, 1 and 3 give
    their own spread, sd 2, times t(2) = 4.30 over sqrt(3)."""
    agree = intervals.summarise([_seed_frame(1.0, 5.0, 2000, s) for s in range(3)]).iloc[0]
    split = [_seed_frame(c, 5.0, 2000, s) for s, c in enumerate((-1.0, 1.0, 3.0))]
    wide = intervals.summarise(split).iloc[0]
    assert agree["ci_high"] - agree["ci_low"] < 1.5
    assert wide["ci_low"] < 0 < wide["ci_high"] and wide["verdict"] == "inconclusive"
    assert wide["ci_high"] - wide["ci_low"] == pytest.approx(2 * 4.303 * 2 / 3**0.5, rel=0.1)


def test_seeds_that_agree_by_chance_keep_s_minus_1_degrees_of_freedom():
    """Three seeds with the same estimate: the seed part is 0, yet t keeps 2 df, as a seed
    variance estimated from 3 values must (Satterthwaite's df would jump towards the images')."""
    frames = [_seed_frame(2.0, 5.0, 2000, s) for s in range(3)]
    for f in frames:
        f["estimate"] = 2.0
    row = intervals.summarise(frames).iloc[0]
    assert row["df"] == 2
    t = (row["ci_high"] - row["estimate"]) / row["se"]
    assert t == pytest.approx(4.303, abs=1e-3)


def test_one_seed_says_its_interval_counts_images_alone():
    one = intervals.summarise([_seed_frame(2.0, 5.0, 2000, 0)]).iloc[0]
    assert one["seeds"] == 1 and "one seed" in one["method"]
    assert one["ci_high"] - one["ci_low"] == pytest.approx(2 * 1.96 * 5 / 2000**0.5, rel=0.1)


def test_coverage_command_writes_its_table(tmp_path):
    out = tmp_path / "coverage.csv"
    intervals.main(["--trials", "50", "--seeds", "3", "--out", str(out)])
    table = pd.read_csv(out)
    assert list(table["scenario"]) == list(intervals.SCENARIOS)
    assert table["coverage"].between(0, 1).all() and (table["trials"] == 50).all()


def test_a_run_with_no_claim_pair_summarises_to_nothing():
    """A --models subset can form no claim: its rows are empty, not an error."""
    empty = intervals.claim_rows({}, 10)
    assert empty.empty and list(empty.columns) == ["claim", "estimate", "image", "u"]
    assert intervals.summarise([empty, empty]).empty
