"""REPORT.md's and README.md's verdict by threat model, from intervals tables with known
verdicts, and the committed README's verdict read back from its CSVs."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from runs.study import report

ROOT = Path(__file__).resolve().parents[1]


def intervals(*claims) -> pd.DataFrame:
    columns = ["claim", "estimate", "ci_low", "ci_high", "verdict"]
    return pd.DataFrame([dict(zip(columns, c)) for c in claims]).assign(seeds=3)


def line(text: str, claim: str) -> str:
    return next(row for row in text.splitlines() if row.startswith(f"| {claim} "))


def test_verdict_says_depends_when_sizes_disagree_and_reads_the_whitebox_table(tmp_path):
    (tmp_path / "rigorous").mkdir()
    intervals(
        ("best BNN minus best baseline, both at x 1", 2.0, 1.0, 3.0, "holds"),
        ("best BNN minus best baseline, both at x 3", -2.0, -3.0, -1.0, "fails"),
        ("100-sample ensemble minus one sample (Table 3's BNN)", 3.0, 2.0, 4.0, "holds"),
    ).to_csv(tmp_path / "rigorous" / "intervals.csv", index=False)
    intervals(
        ("best BNN minus best plain net, PGD at eps 1", -5.0, -6.0, -4.0, "fails"),
        ("best BNN minus the adversarially trained net, PGD at eps 1", -30, -33, -27, "fails"),
    ).to_csv(tmp_path / "rigorous" / "epsilon_intervals.csv", index=False)
    text = "\n".join(report._verdict_section(tmp_path, ["rigorous"], "results-hour"))
    assert "(results-hour/rigorous/epsilon_intervals.csv)" in text  # the profile's folder
    best = line(text, "best BNN minus best plain net")
    assert "**depends on size**: holds at x 1 +2.0 [+1.0, +3.0] / fails at x 3 -2.0 " in best
    assert "**fails**: fails at eps 1 -5.0 [-6.0, -4.0]" in best
    ensemble = line(text, "100-sample ensemble minus one sample (rho_init -3)")
    assert "**holds**: holds at x 1 +3.0 [+2.0, +4.0]" in ensemble
    assert ensemble.rstrip(" |").endswith("not measured")  # no white-box row for it
    assert "**fails**: fails at eps 1 -30.0" in line(text, "best BNN minus the adversarially")


def test_verdict_names_the_ensemble_size_its_table_gives(tmp_path):
    (tmp_path / "paper").mkdir()
    intervals(
        ("10-sample ensemble minus one sample (Table 3's BNN)", 1.0, -1.0, 2.0, "inconclusive"),
    ).to_csv(tmp_path / "paper" / "intervals.csv", index=False)
    text = "\n".join(report._verdict_section(tmp_path, ["paper"], "results"))
    assert "**inconclusive**: inconclusive at x 1.5 +1.0 [-1.0, +2.0]" in line(
        text, "10-sample ensemble minus one sample (rho_init -3)"
    )


def test_a_cell_over_fewer_seeds_says_so_and_the_split_claims_are_labelled(tmp_path):
    (tmp_path / "rigorous").mkdir()
    name = "best BNN with noise minus the deterministic BNN (rho_init -30), both at x 2"
    rest = "the deterministic BNN (rho_init -30) minus best baseline trained as the BNNs"
    table = intervals(
        ("best BNN minus best baseline, both at x 2", 2.0, 1.0, 3.0, "holds"),
        (name, 1.0, 0.5, 1.5, "holds"),
        (f"{rest}, both at x 2", 1.0, -0.5, 2.5, "inconclusive"),
    )
    table.loc[1:, "seeds"] = 1  # claims added after two of the three seeds ran
    table.to_csv(tmp_path / "rigorous" / "intervals.csv", index=False)
    frame = report.verdict_frame(tmp_path, ["rigorous"])
    assert list(frame["seeds"]) == [3, 1, 1]
    text = "\n".join(report._verdict_section(tmp_path, ["rigorous"], "results"))
    assert line(text, "best BNN minus best plain net").rstrip(" |").endswith("[+1.0, +3.0]")
    noise = line(text, "weight noise: best BNN with noise minus the deterministic BNN")
    assert "holds at x 2 +1.0 [+0.5, +1.5] (1 seed)" in noise
    assert "(1 seed)" in line(text, "the rest of BNN training: the deterministic BNN minus")
    assert (tmp_path / "claims.png").stat().st_size > 0


def test_no_intervals_no_verdict_section(tmp_path):
    assert report._verdict_section(tmp_path, ["paper", "rigorous"], "results") == []


def test_the_readme_verdict_is_its_csvs():
    """README.md's verdict block is what runs.study.report makes from the committed CSVs, so a
    number typed into it, or a CSV changed without it, fails here."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"python -m runs\.study\.report --results ([\w./-]+)", readme)
    assert found, "README.md names no `python -m runs.study.report --results <folder>` command"
    start, end = report.README_MARKS
    block = readme.split(start, 1)[1].split(end, 1)[0]
    assert block == "\n" + report.readme_verdict(ROOT / found.group(1), found.group(1)) + "\n"
    start, end = report.TIMES_MARKS
    assert readme.split(start, 1)[1].split(end, 1)[0] == f"\n{report.readme_times(ROOT)}\n"
    start, end = report.APPROX_MARKS
    approx = report.readme_approximations(ROOT / report.APPROXIMATIONS, report.APPROXIMATIONS)
    assert readme.split(start, 1)[1].split(end, 1)[0] == f"\n{approx}\n"


def test_the_approximations_table_reads_its_csvs_and_drops_hmc_until_it_ran(tmp_path):
    points = {p: 50.0 for p in report.APPROX_POINTS}
    pd.DataFrame([
        {"method": "vi", "acc": 90.04, "nll": 0.3312, **points},
        {"method": "plain", "acc": 91.0, "nll": 0.3, **points},
    ]).to_csv(tmp_path / "approximations.csv", index=False)  # fmt: skip
    intervals(
        ("vi minus plain, white-box L2 eps 1", -2.0, -3.5, -0.5, "fails"),
        ("vi minus plain, white-box Linf eps 0.05", 0.4, -1.0, 1.8, "inconclusive"),
        ("vi minus vi-mu, white-box L2 eps 1", 1.0, 0.5, 1.5, "holds"),
    ).to_csv(tmp_path / "approximations_intervals.csv", index=False)
    (tmp_path / "seeds" / "0").mkdir(parents=True)
    (tmp_path / "seeds" / "0" / "seed.json").write_text(json.dumps({"command": "cmd", "seed": 0}))
    text = report.readme_approximations(tmp_path, "res")
    assert text.startswith("Made by `cmd` (seeds: 0)") and "(res/approximations.png)" in text
    row = line(text, "vi")
    assert "| 90.0 " in row and "| 0.331 " in row and "-2.0 [-3.5, -0.5] fails" in row
    assert "+0.4 [-1.0, +1.8] inconclusive" in row and "minus hmc" not in text
    assert row.rstrip(" |").endswith("+1.0 [+0.5, +1.5] holds")  # minus its mean weights
    assert line(text, "plain").count(" - ") == 3  # nothing against itself


def test_update_readme_rewrites_only_its_block_and_names_a_missing_one(tmp_path):
    (tmp_path / "res" / "rigorous").mkdir(parents=True)
    intervals(
        ("best BNN minus best baseline, both at x 1", 2.0, 1.0, 3.0, "holds"),
    ).assign(method="t").to_csv(tmp_path / "res" / "rigorous" / "intervals.csv", index=False)
    info = {"command": "cmd", "commit": "abc", "date": "d", "machine": "m", "seeds": [0, 1],
            "protocols": ["rigorous"], "profile": {"name": "hour"},
            "compute_seconds": {"bnn": {"0": 1800, "1": 1800}}, "total_seconds": 5400,
            "seed_commits": {"0": "abc", "1": "def"}}  # fmt: skip
    (tmp_path / "res" / "run.json").write_text(json.dumps(info))
    start, end = report.README_MARKS
    readme = tmp_path / "README.md"
    times = "\n".join(report.TIMES_MARKS)
    readme.write_text(f"top\n{start}\nstale +9.9\n{end}\nbottom\n{times}\n")
    report.update_readme(readme, tmp_path / "res", root=tmp_path)
    text = readme.read_text()
    assert text.startswith("top\n") and f"{end}\nbottom\n" in text
    assert "stale" not in text and "+2.0 [+1.0, +3.0]" in text and "1.0 h of compute" in text
    assert "(res/claims.png)" in text and "; m): profile **hour**" in text
    assert "2 seeds (0, 1) (run at commits 0: abc, 1: def)" in text
    assert "With two seeds the seed part of each interval has one degree of freedom" in text
    assert "`python runs/epsilon_curves.py --profile hour` has run on these nets" in text
    intervals(
        ("best BNN minus best plain net, at L2 eps 1", -5.0, -6.0, -4.0, "fails"),
    ).assign(method="t").to_csv(tmp_path / "res" / "rigorous" / "epsilon_intervals.csv",
                                index=False)  # fmt: skip
    report.update_readme(readme, tmp_path / "res", root=tmp_path)
    assert "has run on these nets" not in readme.read_text()
    readme.write_text("no block")
    with pytest.raises(ValueError, match="README.md has no"):
        report.update_readme(readme, tmp_path / "res")


def test_wall_times_add_each_seeds_compute_and_name_the_command(tmp_path):
    info = {"command": "python runs/reproduce.py --profile hour", "machine": "m", "date": "d",
            "commit": "abc", "total_seconds": 7200, "device": "cpu",
            "compute_seconds": {"bnn": {"0": 1800, "1": 900}, "pool": {"0": 1800}}}  # fmt: skip
    (tmp_path / "runs" / "results-x").mkdir(parents=True)
    (tmp_path / "runs" / "results-x" / "run.json").write_text(json.dumps(info))
    (row,) = report.wall_times(tmp_path).to_dict("records")
    assert row["results"] == "runs/results-x/" and row["this command (h)"] == 2.0
    assert row["compute per seed (h)"] == "seed 0: 1.00; seed 1: 0.25"
    assert "| `python runs/reproduce.py --profile hour` |" in report.readme_times(tmp_path)
    assert report.readme_times(tmp_path / "none") == "No results folder has a run.json yet."


def test_each_committed_report_is_rebuilt_from_its_csvs(tmp_path):
    """Every runs/REPORT*.md whose results folder holds the headline claims' CSVs is what
    write_report makes from that folder's CSVs and run.json alone: a figure typed into a
    report, or a CSV changed without its report, fails here."""
    rebuilt = 0
    for committed in sorted((ROOT / "runs").glob("REPORT*.md")):
        text = committed.read_text()
        link = re.search(r"Results: \[([\w./-]+)/\]", text).group(1)
        results = committed.parent / link
        info = json.loads((results / "run.json").read_text())
        if not all((results / p / "claims.csv").exists() for p in info["protocols"]):
            continue  # made before the claims had a CSV: README.md names its commit
        report.write_report(tmp_path / committed.name, info, results, link=link)
        assert (tmp_path / committed.name).read_text() == text, committed.name
        rebuilt += 1
    assert rebuilt >= 1


def test_the_transfer_table_keeps_every_kind_apart():
    """The controls share their param with a BNN or a plain net (bnn-mu -3, plain-matched 0):
    each keeps a row of its own, and the best-minus-best rows compare BNNs with each
    budget of plain nets alone."""
    rows = [("bnn", -3.0, 80.0), ("bnn-mu", -3.0, 90.0), ("fixed-sigma", -3.0, 60.0),
            ("plain", 0.0, 70.0), ("plain-matched", 0.0, 75.0)]  # fmt: skip
    sweep = pd.DataFrame(
        [{"kind": k, "param": p, "source": "FC-10_lam0", "multiplier": 1.0, "acc": a}
         for k, p, a in rows]
    )  # fmt: skip
    text = "\n".join(report._transfer_section(sweep))
    assert "| BNN rho_init -3 " in text and "| BNN posterior mean, rho_init -3 " in text
    assert "| plain lambda 0 " in text and "| plain trained as the BNNs, lambda 0 " in text
    assert line(text, "best BNN minus best plain net").split("|")[2].strip() == "10"
    assert (
        line(text, "best BNN minus best plain net trained as the BNNs").split("|")[2].strip() == "5"
    )
