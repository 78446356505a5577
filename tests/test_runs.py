"""The study's smaller runs/ entry points, each through its real command line in quick mode."""

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyro_bnn import load_mnist
from runs.study import paper
from runs.study.config import BNN
from runs.study.zoo import train_bnns
from tests.conftest import SUBPROCESS_TIMEOUT, run, run_script


def test_paper_values_are_transcribed_consistently():
    def averages(rows):
        return [sum(col) / len(col) for col in zip(*rows)]

    def close(ours, printed):  # printed to 2 decimals, rounded half up
        return all(abs(a - b) <= 0.005 + 1e-9 for a, b in zip(ours, printed, strict=True))

    # the averages printed in the paper, recomputed from the transcribed cells
    assert close(averages(paper.TABLE2_BNN), [81.01, 80.62, 83.04, 83.22, 80.61, 78.19, 71.90])
    assert close(averages(paper.TABLE2_PLAIN), [66.42, 64.27, 67.78, 61.99])
    assert close(averages(paper.TABLE3), [83.21, 87.18, 87.86, 88.14, 88.28])
    assert close(averages(paper.TABLE4), [84.26, 84.23, 76.59, 54.39, 39.82, 26.75])


def test_train_bnns_quick():
    out = run("runs/train_bnns.py", "--quick", "--no-progress", timeout=SUBPROCESS_TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("|") and "rho" not in line]
    assert len(rows) == 1 + 2  # the separator and two rho_init rows


def test_entry_points_run_as_modules_and_reject_bad_limits():
    out = run("-m", "runs.reproduce", "--help")
    assert out.returncode == 0 and "--profile" in out.stdout
    for script in ("runs/train_bnns.py", "runs/bnn_curves.py"):
        out = run(script, "--limit", "0")
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "--limit: must be a positive integer" in out.stderr


def test_bnn_curves_quick(tmp_path):
    """Two rho_init stacked for 4 epochs: a curve row per model and epoch, Table 1's metric
    every 2 epochs, three selection rules, a plot; a rerun resumes from the checkpoints."""
    args = ("--root", str(tmp_path / "art"), "--results", str(tmp_path / "res"))
    args += ("--export", str(tmp_path / "full"))
    out = run_script("bnn_curves.py", *args, "--no-compile", "--no-progress")
    curves = pd.read_csv(tmp_path / "res" / "curves_seed0.csv")
    assert sorted(zip(curves["rho_init"], curves["epoch"])) == sorted(
        (r, e) for r in (-3.0, -30.0) for e in range(1, 5)
    )
    evaluated = curves.dropna(subset=["test_single"])
    assert sorted(set(evaluated["epoch"])) == [2, 4]
    assert evaluated["test_single"].between(10, 100).all()  # above chance after 2 epochs
    selection = pd.read_csv(tmp_path / "res" / "selection_seed0.csv")
    assert len(selection) == 6 and selection["rule"].nunique() == 3
    assert (tmp_path / "res" / "curves_seed0.png").stat().st_size > 10_000
    assert "| best validation" in out and "Made by `python runs/bnn_curves.py" in out
    again = run_script("bnn_curves.py", *args, "--no-compile", "--no-progress")
    assert pd.read_csv(tmp_path / "res" / "curves_seed0.csv").equals(curves)
    assert pd.read_csv(tmp_path / "res" / "selection_seed0.csv").equals(selection)
    assert "this invocation: 0.0 min" in again  # nothing trained again
    # the exported BNNs are the ones the study's train_bnns would train itself
    data, train, rhos = load_mnist().head(1000), replace(BNN, max_epochs=4), [-3.0, -30.0]
    lines = []
    exported = train_bnns(rhos, data, train=train, root=tmp_path / "full", log=lines.append)
    assert all(line.startswith("reused") for line in lines) and len(lines) == 2
    fresh = train_bnns(rhos, data, train=train, root=tmp_path / "fresh", progress=False)
    for (_, guide, meta), (_, again, meta_again) in zip(exported, fresh):
        for key, value in guide.state_dict().items():
            torch.testing.assert_close(value, again.state_dict()[key])
        assert meta["best_epoch"] == meta_again["best_epoch"]
        assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    shifted = selection.assign(test_single=selection["test_single"] + 1.0)  # a second seed
    shifted.to_csv(tmp_path / "res" / "selection_seed1.csv", index=False)
    run_script("bnn_curves.py", "--results", str(tmp_path / "res"), "--combine")
    seeds = pd.read_csv(tmp_path / "res" / "selection_seeds.csv")
    assert len(seeds) == 6 and seeds["seeds"].eq(2).all()
    merged = seeds.merge(selection, on=["rho_init", "rule"])
    assert ((merged["test_mean"] - merged["test_single"] - 0.5).abs() < 1e-9).all()
    assert ((merged["test_sd"] - 0.5**0.5).abs() < 1e-9).all()  # sd of (a, a + 1)


def test_attack_budget_quick():
    """Two budgets of the authors' attack on FC-10 sources trained as the authors' were:
    set summaries beside the authors' notebook, Table 2 cells of every model at each budget,
    and the figure."""
    out = run_script("attack_budget.py")
    folder = Path(out.split("BNNs from ")[1].split(".\n")[0])
    sets = pd.read_csv(folder / "sets_paper-sources_FC-10_n100_3ep_lam0.csv")
    assert list(sets["steps"]) == [5, 20] and sets["n"].eq(100).all()
    assert (sets["already_wrong"] <= sets["n_success"]).all()
    assert sets["authors_success_rate"].eq(8351 / 10_000).all()  # FC-10, lambda 0
    ratio = sets["success_rate"] / sets["authors_success_rate"]
    assert ((sets["survivors_vs_authors"] - ratio).abs() < 1e-12).all()
    cells = pd.read_csv(folder / "budget_paper-sources_FC-10_n100_3ep_lam0.csv")
    assert len(cells) == 2 * (2 + 2 + 4)  # budgets x (2 BNNs, their posterior means, 4 plains)
    assert set(cells["multiplier"]) == {1.5, 3.0} and cells["acc"].between(0, 100).all()
    theirs = cells[cells["kind"].isin(["bnn", "plain"])]  # FC-10 lambda 0: Table 2's first row
    expected = [paper.TABLE2_BNN[0][paper.RHO_INITS.index(v)] if k == "bnn"
                else paper.TABLE2_PLAIN[0][paper.LAMBDAS.index(v)]
                for k, v in zip(theirs["kind"], theirs["param"])]  # fmt: skip
    assert theirs["paper"].tolist() == expected
    assert ((theirs["diff"] - (theirs["acc"] - theirs["paper"])).abs() < 1e-9).all()
    assert cells.loc[~cells.index.isin(theirs.index), "paper"].isna().all()
    assert (folder / "budget_paper-sources_FC-10_n100_3ep_lam0.png").stat().st_size > 10_000
    assert "Table 2 cells" in out


def test_attack_budget_sets_only_on_early_stopped_sources():
    """--sets-only trains no BNN and scores no model; the early-stopped sources (the
    rigorous protocol's) have no authors' row to stand beside."""
    out = run_script("attack_budget.py", "--sets-only", "--sources", "early-stopped")
    assert "sources: early-stopped" in out and "Table 2 cells" not in out
    header, _, first = out[out.index("| source") :].splitlines()[:3]
    row = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in first.split("|")]))
    assert row["source"] == "FC-10_lam0_seed0" and row["survivors_vs_authors"] == "nan"


@pytest.mark.parametrize(
    ("script", "option", "value", "says"),
    [
        ("attack_budget.py", "--prob-clip", "0.7", "must be a number in [0, 0.5)"),
        ("source_fingerprint.py", "--loss-tol", "0", "must be a finite number > 0"),
        ("source_fingerprint.py", "--acc-tol", "nan", "must be a finite number > 0"),
        ("approximations.py", "--csghmc-noise", "0.1", "must be in [0.25, 1], got 0.1"),
        ("csghmc_temperature.py", "--noise", "0.1", "must be in [0.25, 1], got 0.1"),
    ],
)
def test_a_bad_study_option_is_named_before_any_training(script, option, value, says):
    proc = run(f"runs/{script}", "--quick", option, value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{option}: {says}" in proc.stderr and not proc.stdout


def test_source_fingerprint_quick():
    """Per-epoch accuracy, loss and live share of a paper-protocol source, beside the
    notebook's row."""
    out = run_script("source_fingerprint.py")
    folder = Path(out.split("saved ")[1].split("/fingerprint/")[0])
    epochs = pd.read_csv(folder / "fingerprint_FC-10_lam0.csv")
    assert list(epochs["epoch"]) == [1, 2, 3] and epochs["live_share"].between(0, 1).all()
    summary = pd.read_csv(folder / "fingerprint_FC-10_lam0_summary.csv").iloc[0]
    assert summary["authors_survivors"] == 8351 / 10_000 and summary["epochs"] == 3
    assert summary["val_acc"] == pytest.approx(epochs["val_acc"].iloc[-1])
    assert (folder / "fingerprint_FC-10_lam0.png").stat().st_size > 10_000


def test_loss_matched_epoch_is_the_nearest_loss_at_the_notebooks_accuracy():
    """The loss falls then rises: epoch 2 and epoch 5 both sit at the notebook's loss, but
    only epoch 5 is within the accuracy tolerance."""
    from runs.source_fingerprint import _longest_run, summarise

    assert _longest_run(pd.Series([1, 2, 3, 5, 6, 7, 8, 10])) == "5-8"

    acc, loss = paper.AUTHORS_SETS[("FC-200-200-10", 0.0)][2:]
    frame = pd.DataFrame({
        "epoch": [1, 2, 3, 4, 5, 6],
        "val_acc": [95.0, 96.0, 97.5, 97.8, 97.9, 97.85],
        "val_loss": [0.2, loss, 0.08, 0.088, loss + 0.0004, 0.1],
        "live_share": [1.0, 1.0, 0.95, 0.8, 0.7, 0.6],
    }).assign(arch="FC-200-200-10", lam=0.0, seed=0)  # fmt: skip
    row = summarise(frame, acc_tol=0.3, loss_tol=1e-3).iloc[0]
    assert row["matched_epoch"] == 5 and row["matched_live_share"] == 0.7
    assert row["live_share"] == 0.6 and row["authors_survivors"] == 0.7315
    assert row["loss_tied_epochs"] == "5-5" and row["loss_tied_live"] == "0.7-0.7"
    assert row["live_near_count"] == 2 and row["live_near_run"] == "4-5"  # 0.8, 0.7 of 0.7315
    assert summarise(frame, acc_tol=0.3, loss_tol=0.1).iloc[0]["loss_tied_epochs"] == "4-6"
    assert pd.isna(summarise(frame, 0.001, 1e-3).iloc[0]["matched_epoch"])  # none that close
