"""The runs/ examples through their real command lines, in quick mode, writing to tmp_path."""

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from pyro_bnn import load_mnist
from runs.config import BNN
from runs.zoo import train_bnns
from tests.conftest import SUBPROCESS_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, f"runs/{script}", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_cnn_mnist_quick(tmp_path):
    args = ("--root", str(tmp_path / "art"), "--results", str(tmp_path / "res"), "--no-progress")
    out = run_script("cnn_mnist.py", *args)
    table = pd.read_csv(tmp_path / "res" / "cnn_mnist.csv")
    assert list(table["rule"]) == ["one weight sample", "mean of 10 samples"]
    assert table["epochs"].eq(1).all() and table["n_test"].eq(500).all()
    assert table["test_acc"].between(0, 1).all() and table["acc_sd"].ge(0).all()
    assert (table["test_nll"] > 0).all() and table["test_nll"].map(math.isfinite).all()
    assert "| one weight sample" in out and (tmp_path / "res" / "cnn_mnist.md").is_file()
    (artifact,) = (tmp_path / "art").iterdir()
    assert {"tensors.pt", "meta.json"} <= {p.name for p in artifact.iterdir()}
    # a rerun with the same settings reuses the fitted guide and says so
    again = run_script("cnn_mnist.py", *args)
    assert f"reused {artifact}" in again
    assert pd.read_csv(tmp_path / "res" / "cnn_mnist.csv")["epochs"].eq(1).all()


def test_regression_quick(tmp_path):
    out = run_script("regression.py", "--results", str(tmp_path))
    png = tmp_path / "regression_toy.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(tmp_path / "regression.csv")
    assert list(table["model"]) == ["BNN", "plain"]
    assert table["seeds"].eq(1).all() and table["n_test"].eq(88).all()
    # diabetes targets span 25-346 (sd 77): any fitted net lands well inside (0, 200)
    assert table["test_rmse"].between(1, 200).all()
    assert table["test_nll"].map(math.isfinite).all()
    assert table["coverage_95"].between(0, 1).all()
    assert "| BNN" in out and (tmp_path / "regression.md").is_file()


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
    """Two budgets of the authors' attack on FC-10: set summaries, Table 2 cells of every
    model at each budget, and the figure."""
    out = run_script("attack_budget.py")
    folder = Path(out.split("BNNs from ")[1].split(",")[0])
    sets = pd.read_csv(folder / "sets_FC-10_n100.csv")
    assert list(sets["steps"]) == [5, 20] and sets["n"].eq(100).all()
    assert (sets["already_wrong"] <= sets["n_success"]).all()
    cells = pd.read_csv(folder / "budget_FC-10_n100.csv")
    assert len(cells) == 2 * (2 + 2 + 4)  # budgets x (2 BNNs, their posterior means, 4 plains)
    assert set(cells["multiplier"]) == {1.5, 3.0} and cells["acc"].between(0, 100).all()
    assert (folder / "budget_FC-10_n100.png").stat().st_size > 10_000 and "Table 2 cells" in out
