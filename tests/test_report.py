"""REPORT.md's verdict by threat model, from intervals tables with known verdicts."""

import pandas as pd

from runs import report


def intervals(*claims) -> pd.DataFrame:
    columns = ["claim", "estimate", "ci_low", "ci_high", "verdict"]
    return pd.DataFrame([dict(zip(columns, c)) for c in claims]).assign(seeds=3)


def line(text: str, claim: str) -> str:
    return next(row for row in text.splitlines() if row.startswith(f"| {claim} "))


def test_verdict_says_depends_when_sizes_disagree_and_reads_the_whitebox_table(tmp_path):
    frames = {
        "rigorous/intervals": intervals(
            ("best BNN minus best baseline, both at x 1", 2.0, 1.0, 3.0, "holds"),
            ("best BNN minus best baseline, both at x 3", -2.0, -3.0, -1.0, "fails"),
            ("100-sample ensemble minus one sample (Table 3's BNN)", 3.0, 2.0, 4.0, "holds"),
        )
    }
    (tmp_path / "rigorous").mkdir()
    intervals(
        ("best BNN minus best plain net, PGD at eps 1", -5.0, -6.0, -4.0, "fails"),
        ("best BNN minus the adversarially trained net, PGD at eps 1", -30, -33, -27, "fails"),
    ).to_csv(tmp_path / "rigorous" / "epsilon_intervals.csv", index=False)
    text = "\n".join(report._verdict_section(frames, ["rigorous"], tmp_path, "results-hour"))
    assert "(results-hour/rigorous/epsilon_intervals.csv)" in text  # the profile's folder
    best = line(text, "best BNN minus best plain net")
    assert "**depends on size**: holds at x 1 +2.0 [+1.0, +3.0] / fails at x 3 -2.0 " in best
    assert "**fails**: fails at eps 1 -5.0 [-6.0, -4.0]" in best
    ensemble = line(text, "100-sample ensemble minus one sample (rho_init -3)")
    assert "**holds**: holds at x 1 +3.0 [+2.0, +4.0]" in ensemble
    assert ensemble.rstrip(" |").endswith("not measured")  # no white-box row for it
    assert "**fails**: fails at eps 1 -30.0" in line(text, "best BNN minus the adversarially")


def test_verdict_names_the_ensemble_size_its_table_gives(tmp_path):
    frames = {
        "paper/intervals": intervals(
            ("10-sample ensemble minus one sample (Table 3's BNN)", 1.0, -1.0, 2.0, "inconclusive"),
        )
    }
    text = "\n".join(report._verdict_section(frames, ["paper"], tmp_path))
    assert "**inconclusive**: inconclusive at x 1.5 +1.0 [-1.0, +2.0]" in line(
        text, "10-sample ensemble minus one sample (rho_init -3)"
    )


def test_no_intervals_no_verdict_section(tmp_path):
    assert report._verdict_section({}, ["paper", "rigorous"], tmp_path) == []
