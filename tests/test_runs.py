"""The runs/ entry points, each through its real command line in quick mode."""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyro_bnn import load_mnist
from runs.reproduce import main as reproduce
from runs.study import intervals, paper
from runs.study.config import BNN
from runs.study.pipeline import table_config
from runs.study.profiles import PROFILES, get_profile
from runs.study.results import combine
from runs.study.tables import TRANSFER_MULTIPLIERS, WHITEBOX_MULTIPLES
from runs.study.zoo import CONTROLS, train_bnns
from tests.conftest import SUBPROCESS_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
QUICK = get_profile("quick")
# sources, the paper protocol's own sources, BNNs, baselines, the pool, the training controls,
# the plain nets trained as the BNNs
NETS = 12 + 12 * (QUICK.paper_source_epochs is not None) + len(paper.RHO_INITS) + 4
NETS += QUICK.pool + len(CONTROLS) * len(QUICK.control_rhos) + 4
# beside the BNNs and baselines, every model scores: the BNNs' posterior means, the training
# controls and the plain nets trained as the BNNs
SCORED_CONTROLS = len(paper.RHO_INITS) + len(CONTROLS) * len(QUICK.control_rhos) + 4


def run(*args, timeout=SUBPROCESS_TIMEOUT):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def run_script(script: str, *args: str) -> str:
    """``python runs/<script> --quick <args>``: its stdout, after checking it succeeded."""
    proc = run(f"runs/{script}", "--quick", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


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


def test_reproduce_quick_killed_resumed_and_rerun(tmp_path):
    args = [
        "runs/reproduce.py",
        "--profile",
        "quick",
        "--no-progress",
        "--root",
        str(tmp_path / "artifacts"),
        "--results",
        str(tmp_path / "results"),
        "--report",
        str(tmp_path / "REPORT.md"),
        "--workers",
        "2",
    ]
    # 1. kill the run once the nets are trained (each source job built its attack sets in
    # its worker) and the attack-set stage has started
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:
        if "attack sets (paper) ..." in line:
            proc.kill()
            break
    proc.wait(timeout=60)
    assert proc.returncode != 0
    trained = {p: p.stat().st_mtime_ns for p in (tmp_path / "artifacts").rglob("meta.json")}
    # 4 baselines, 12 sources and their 2 x 12 attack sets, 7 BNNs, 2 pool nets, table 1
    assert len(trained) >= 25 + 24
    sets = {kind: sorted((tmp_path / "artifacts").rglob(f"attack-{kind}/*/meta.json"))
            for kind in ("paper", "rigorous")}  # fmt: skip
    assert [len(found) for found in sets.values()] == [12, 12]
    lost = sets["paper"][0].parent  # as if the kill had come while this set was being built
    shutil.rmtree(lost)
    del trained[lost / "meta.json"]

    # 2. the restart keeps every finished artifact, builds the lost set alone, and completes
    first = run(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"{NETS} of {NETS} nets already trained; 0 to go" in first.stdout
    assert {p: p.stat().st_mtime_ns for p in trained} == trained
    assert f"saved {lost} (" in first.stdout and (lost / "meta.json").is_file()
    results = tmp_path / "results"
    for protocol in ("paper", "rigorous"):
        for table in ("table1", "table2", "table3", "table4", "attacks"):
            assert (results / protocol / f"{table}.csv").is_file(), (protocol, table)
        t2 = pd.read_csv(results / protocol / "table2.csv")
        assert len(t2) == 12 * (7 + 4 + SCORED_CONTROLS)  # 12 attack sets x every model
        assert {"acc", "paper", "diff"} <= set(t2.columns)
        assert t2["paper"].notna().eq(t2["kind"].isin(["bnn", "plain"])).all()
        assert t2["acc"].between(0, 100).all()
    assert (results / "paper" / "multiplier.csv").is_file()
    for extra in ("noise", "whitebox", "fixednoise"):
        assert (results / "rigorous" / f"{extra}.csv").is_file()
    fixed = pd.read_csv(results / "rigorous" / "fixednoise.csv")
    assert len(fixed) == (1 + 12) * 7  # clean and 12 sets x one fixed-noise net per rho_init
    for protocol in ("paper", "rigorous"):
        claims = pd.read_csv(results / protocol / "intervals.csv")
        assert (claims["ci_low"] <= claims["estimate"]).all()
        assert (claims["estimate"] <= claims["ci_high"]).all()
        assert set(claims["verdict"]) <= {"holds", "fails", "inconclusive"}
    sigma = pd.read_csv(results / "sigma.csv")
    assert len(sigma) == 7 * 6  # every BNN's six parameter tensors
    noise = pd.read_csv(results / "rigorous" / "noise.csv")
    assert ((noise["l2_achieved"] / noise["l2_intended"] - 1).abs() < 1e-4).all()
    assert ((noise["l2_ratio"] - 1).abs() < 1e-4).all() and (noise["n_unreachable"] == 0).all()
    whitebox = pd.read_csv(results / "rigorous" / "whitebox.csv")
    assert "acc_under_attack" not in whitebox.columns  # read at r alone, failures as clean
    curves = whitebox.groupby(["kind", "param"], sort=False)["multiplier"].apply(tuple)
    assert len(curves) == 7 + 1 + 4  # the BNNs, Table 3's BNN's 10-sample mean, baselines
    assert all(curve == WHITEBOX_MULTIPLES for curve in curves)
    assert (whitebox["n_scored"] == (whitebox["n"] * whitebox["success_rate"]).round()).all()
    sweep = pd.read_csv(results / "rigorous" / "transfer.csv")
    sources = set(sweep["source"])  # seeds pooled: no name keeps its seed
    assert len(sources) == 12 + 7 + 1 + 4 and not any("seed" in s for s in sources)
    assert set(sweep["multiplier"]) == set(TRANSFER_MULTIPLIERS)
    assert len(sweep) == len(sources) * len(TRANSFER_MULTIPLIERS) * (7 + 4 + SCORED_CONTROLS)
    own = sweep[sweep["source"] == "FC-100-100-10_lam0"].set_index(["kind", "param"])
    plain_acc = own.loc[("plain", 0.0)].set_index("multiplier")["acc"]
    rate = whitebox.query("kind == 'plain' and param == 0")["success_rate"].iloc[0]
    assert plain_acc[1.0] <= 100 * (1 - rate) + 1e-9  # its own white-box set, on itself
    for png in (
        "accuracy_vs_rho",
        "accuracy_vs_ensemble",
        "accuracy_vs_pruning",
        "adversarial_digits",
    ):
        assert (results / f"{png}.png").stat().st_size > 10_000
    report = (tmp_path / "REPORT.md").read_text()
    for heading in (
        "## Table 1",
        "## Protocol 'paper'",
        "## Protocol 'rigorous'",
        "Headline claims",
        "## Wall time",
        "## Verdict by threat model",
        "Norms per set",
        *(f"acc x {m:g}" for m in WHITEBOX_MULTIPLES),
    ):
        assert heading in report
    assert "device **cpu**" in report.splitlines()[2]  # the 'Made by' line
    assert "with 2 passes targeted at the nearest classes" in report  # the quick profile's
    info = json.loads((results / "run.json").read_text())
    assert info["profile"]["name"] == "quick" and info["compute_seconds"]["bnn"]["0"] > 0
    assert info["device"] == "cpu"

    # 3. a rerun reuses everything, says so, and writes the same tables
    metas = {p: p.stat().st_mtime_ns for p in (tmp_path / "artifacts").rglob("meta.json")}
    tables = {p: p.read_bytes() for p in results.rglob("*.csv")}
    saved = {p: p.read_bytes() for p in results.rglob("seeds/**/*.csv.gz")}
    second = run(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in metas} == metas  # nothing was recomputed
    assert f"{NETS} of {NETS} nets already trained; 0 to go" in second.stdout
    reused = [line for line in second.stdout.splitlines() if line.startswith("reused ")]
    # the 24 attack sets on the source nets and the 18 tables: table1, sigma and logit
    # gaps; attacks, table2-4 and intervals of both protocols; multiplier (paper); noise,
    # fixednoise, whitebox and transfer (rigorous). The white-box attack sets are made
    # inside the first table that needs them, and every table is reused whole.
    assert len(list((tmp_path / "artifacts" / "quick" / "tables").iterdir())) == 18
    assert len(reused) == 24 + 18
    assert not any(line.startswith("saved ") for line in second.stdout.splitlines())
    assert {p: p.read_bytes() for p in results.rglob("*.csv")} == tables
    assert saved and {p: p.read_bytes() for p in results.rglob("seeds/**/*.csv.gz")} == saved
    assert json.loads((results / "run.json").read_text())["total_seconds"] < 60

    # 4. seeds saved by an earlier run join the seeds run now: a copy of seed 0 saved as
    # seed 7 gives the same means, no spread over seeds, and intervals over 2 seeds
    assert json.loads((results / "seeds" / "0" / "seed.json").read_text())["seed"] == 0
    one_seed = shutil.copytree(results, tmp_path / "one-seed")
    shutil.copytree(results / "seeds" / "0", results / "seeds" / "7")
    info7 = json.loads((results / "seeds" / "7" / "seed.json").read_text()) | {"seed": 7}
    (results / "seeds" / "7" / "seed.json").write_text(json.dumps(info7))
    both = run(*args)
    assert both.returncode == 0, both.stderr[-3000:]
    assert f"combined with the seeds saved in {results / 'seeds'}: [7]" in both.stdout
    info = json.loads((results / "run.json").read_text())
    assert info["seeds"] == [0, 7] and set(info["seed_commits"]) == {"0", "7"}
    for name in ("rigorous/table2", "paper/table3", "rigorous/whitebox", "table1"):
        one, two = (pd.read_csv(tables_dir / f"{name}.csv") for tables_dir in (one_seed, results))
        pd.testing.assert_series_equal(one["acc"], two["acc"], rtol=1e-6)
        assert (two["seeds"] == 2).all() and (two["acc_seed_std"].abs() < 1e-6).all()
    claims = pd.read_csv(results / "rigorous" / "intervals.csv")
    assert (claims["seeds"] == 2).all() and (claims["method"] == intervals.METHOD).all()


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


def test_combine_averages_a_source_net_over_seeds():
    def frame(seed, acc):
        return pd.DataFrame(
            [{"kind": "bnn", "param": -3.0, "source": f"FC-10_lam0_seed{seed}", "acc": acc}]
        )

    frames = combine([{"t2": frame(0, 80.0)}, {"t2": frame(1, 90.0)}], [0, 1])
    t2 = frames["t2"]
    assert t2["source"].tolist() == ["FC-10_lam0"]
    assert t2["acc"].item() == 85.0
    assert abs(t2["acc_seed_std"].item() - 50**0.5) < 1e-9


def test_reproduce_device_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        reproduce(["--device", "cuda", "--root", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--device" in err and "CUDA is not available" in err and "--device cpu" in err
    assert not any(tmp_path.iterdir())  # it stopped before doing anything


def test_profiles_on_a_gpu():
    quick, full = PROFILES["quick"], PROFILES["full"]
    # the full profile's paper attack takes the authors' budget on a GPU, only there
    assert full.on_device("cuda").paper_steps == paper.ATTACK_STEPS == 4000
    assert full.on_device("cuda:0").paper_steps == 4000
    assert full.on_device("cpu") == full and full.paper_steps == 100
    assert quick.on_device("cuda") == quick  # the quick profile's budgets on either device
    # the rule is not a setting: the tables' configs (and so their hashes) see the steps
    assert "cuda_paper_steps" not in full.as_dict()
    assert full.on_device("cuda").as_dict() == full.as_dict() | {"paper_steps": 4000}


def test_attack_targets_reach_the_rigorous_tables_alone(tmp_path, capsys):
    committed = json.loads((ROOT / "runs" / "results" / "run.json").read_text())
    full, prints = get_profile("full"), {"plain0": "abc"}
    # the full profile's settings are the committed results' but for the controls and the
    # paper protocol's own sources and images, which came after them (README): a rerun
    # makes every table anew
    settings = json.loads(json.dumps(table_config(full, 0, prints)["profile"]))  # as hashed
    assert settings.pop("control_rhos") == [-3.0, -2.0]
    assert settings.pop("paper_source_epochs") == 200
    assert (settings.pop("paper_examples"), committed["profile"].pop("paper_examples")) == (
        None, 2000
    )  # fmt: skip
    assert settings == committed["profile"]
    assert "attack_targets" not in table_config(full, 0, prints, "rigorous")
    two = get_profile("full", attack_targets=2)
    assert two.attack_targets == 2 and PROFILES["full"].attack_targets == 0
    assert table_config(two, 0, prints) == table_config(full, 0, prints)
    assert table_config(two, 0, prints, "paper") == table_config(full, 0, prints, "paper")
    assert table_config(two, 0, prints, "rigorous")["attack_targets"] == 2
    with pytest.raises(SystemExit) as exit_info:
        reproduce(["--attack-targets", "-1", "--root", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--attack-targets: must be a non-negative integer" in err
    assert not any(tmp_path.iterdir())


def test_the_hour_profile_cuts_sizes_and_keeps_the_protocol():
    full, hour = PROFILES["full"].as_dict(), PROFILES["hour"].as_dict()
    cut = {k for k in full.keys() | hour.keys() if full.get(k) != hour.get(k)}
    sizes = {"n_train", "n_eval", "plain_epochs", "source_epochs", "bnn_epochs", "eot_examples"}
    assert cut == {"name", "paper_examples", "paper_source_epochs"} | sizes
    assert hour["n_train"] == 50_000  # all of the training split
    assert all(hour[k] < full[k] for k in sizes - {"n_train", "n_eval"})
    assert full["paper_examples"] is None and hour["paper_examples"] == 1000  # of 2,000
    # hour's paper protocol attacks the shared early-stopped sources (runs.study.profiles)
    assert "paper_source_epochs" not in hour and full["paper_source_epochs"] == 200


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


def test_exact_posterior_quick():
    """HMC chains on FC-10 under both priors: a row per prior with its diagnostics, cost
    and posterior predictive, and the R-hat map."""
    out = run_script("exact_posterior.py", "--no-progress")
    folder = Path(re.search(r"(\S+)/hmc-chain/", out).group(1))
    table = pd.read_csv(folder / "hmc_FC-10_n200.csv")
    assert list(table["prior"]) == ["normal", "scale-mixture"] and table["chains"].eq(2).all()
    assert (table["r_hat_max"] >= table["r_hat_max_lit"]).all() and table["ess_median"].gt(0).all()
    assert table["r_hat_max_iid"].gt(1.0).all()  # independent draws of the same size
    assert table["test_acc"].between(0, 100).all() and table["leapfrog_per_iteration"].gt(0).all()
    assert table["prior_sd"].round(4).tolist() == [1.0, 0.2601]  # N(0, 1); the paper's mixture
    assert table["unlit_sd"].gt(0).all()  # 200 images leave pixels unlit
    # the spike's share: the prior's, 0.5 * P(|N(0, e^-7)| < 3 e^-7) + 0.5 * P(|N(0, e^-1)| < ...)
    assert table["spike_share_prior"].isna().tolist() == [True, False]
    assert round(table["spike_share_prior"][1], 4) == 0.5016
    assert table["spike_share_unlit"][1] <= 1 and table["bimodal_lit"][1] >= 0
    assert (folder / "hmc_FC-10_n200.png").stat().st_size > 10_000
    assert len(list((folder / "hmc-chain").iterdir())) == 4  # a chain per artifact
    out = run_script("exact_posterior.py", "--no-progress", "--priors", "normal", "--chain", "1")
    folder = Path(re.search(r"(\S+)/hmc-chain/", out).group(1))
    (chain,) = (folder / "hmc-chain").iterdir()  # a worker runs its chain only
    assert "_normal_chain1_" in chain.name and not list(folder.glob("*.csv"))
    out = run_script("exact_posterior.py", "--no-progress", "--priors", "scale-mixture",
                     "--chain", "0", "--normal-scores")  # fmt: skip
    folder = Path(re.search(r"(\S+)/hmc-chain/", out).group(1))
    (chain,) = (folder / "hmc-chain").iterdir()  # its own artifact, beside the weights' chains
    assert "_scale-mixture_scores_chain0_" in chain.name
    proc = run("runs/exact_posterior.py", "--quick", "--chains", "2", "--chain", "2")
    assert proc.returncode == 2 and "argument --chain: must be in [0, --chains = 2)" in proc.stderr


def test_the_r_hat_floor_of_independent_draws_falls_with_longer_chains():
    """Over thousands of weights, short perfectly mixed chains still pass 1.01 by chance."""
    from runs.exact_posterior import iid_r_hat_max

    short, long = (
        iid_r_hat_max(torch.Size((3, 50, 2000))),
        iid_r_hat_max(torch.Size((3, 800, 2000))),
    )
    assert short > 1.03 and 1.0 < long < 1.01 and short > long


def test_approximations_quick():
    """Every method on FC-10 through the verdict's harness: clean scores, white-box worst
    case in both norms, transfer at x1-x3, and each method against HMC with an interval."""
    from runs.approximations import METHODS, REFERENCE

    out = run_script("approximations.py", "--no-progress", "--csghmc-scale", "fisher",
                     "--csghmc-start", "map")  # fmt: skip
    folder = Path(re.search(r"(\S+)/hmc-chain/", out).group(1))
    (chain,) = (folder / "approximations").glob("FC-10_csghmc_seed0_*")
    assert json.loads((chain / "meta.json").read_text())["config"]["scale"] == "fisher"
    table = pd.read_csv(folder / "approximations.csv", index_col="method")
    stochastic = ["hmc", "hmc-mixture", "csghmc", "vi-paper", "vi-adam", "lowrank", "mc-dropout"]
    assert set(table.index) == set(METHODS) | {f"{m}-mu" for m in stochastic}
    assert list(table.index).index("csghmc-mu") == list(table.index).index("csghmc") + 1
    for column in ("acc", "white-box L2 eps 1.5", "white-box Linf eps 0.3", "transfer x3"):
        assert table[column].between(0, 100).all(), column
    bayes = table["weight_sd_median"].notna()
    assert set(table.index[bayes]) == set(stochastic)  # MC dropout's draws too
    read = table["temperature"].notna()  # every posterior with a prior: not MC dropout
    assert set(table.index[read]) == set(stochastic) - {"mc-dropout"}
    assert table.loc[read, "temperature"].gt(0).all()
    pressed = table["mean_weight_norm_lit"].notna()  # every single net's, or mean net's
    assert set(table.index[pressed]) == set(stochastic) | {"plain", "plain-adam", "map"}
    claims = pd.read_csv(folder / "approximations_intervals.csv")
    others = [m for m in table.index if m != REFERENCE]
    # against hmc: 2 white-box, 3 transfer and agreement; against plain, all but hmc's;
    # each posterior against its own mean weights
    assert len(claims) == (len(others) * (2 + 3 + 1) + (len(table) - 2) * (2 + 3)
                           + len(stochastic) * (2 + 3))  # fmt: skip
    assert len(claims[claims["claim"].str.startswith("vi-adam minus vi-adam-mu, ")]) == 5
    assert claims["claim"].str.startswith("hmc minus plain").sum() == 0
    agree = claims[claims["claim"].str.contains("agreement")]
    assert agree["estimate"].between(0, 100).all() and (agree["ci_low"] <= agree["estimate"]).all()
    assert (folder / "approximations.png").stat().st_size > 10_000
    attacks = pd.read_csv(folder / "approximations_attacks.csv")
    fixed = attacks[attacks["method"].isin(["plain", "plain-adam", "ensemble"])]  # no draws
    worst = fixed[fixed["attack"] == "worst"].set_index(["method", "norm"])["acc"]
    members = fixed[fixed["attack"] != "worst"].groupby(["method", "norm"])["acc"].min()
    assert (worst <= members.loc[worst.index] + 1e-9).all() and len(worst) == 6


def test_approximations_quick_on_a_deeper_net():
    """FC-100-100-10: the methods but HMC, MC dropout behind every hidden layer too; asking
    for HMC there is refused by name."""
    out = run_script("approximations.py", "--no-progress", "--arch", "FC-100-100-10",
                     "--methods", "csghmc", "mc-dropout", "plain")  # fmt: skip
    folder = Path(re.search(r"saved (\S+)/approximations/FC-100-100-10_", out).group(1))
    table = pd.read_csv(folder / "approximations.csv", index_col="method")
    assert list(table.index) == ["csghmc", "csghmc-mu", "mc-dropout", "mc-dropout-mu", "plain"]
    assert table.loc["csghmc", "weight_sd_median_lit"] > 0
    claims = pd.read_csv(folder / "approximations_intervals.csv")
    against = claims["claim"].str.extract(r" minus ([\w-]+),")[0]
    assert set(against) == {"plain", "csghmc-mu", "mc-dropout-mu"}  # no hmc to measure against
    proc = run("runs/approximations.py", "--quick", "--arch", "FC-100-100-10", "--methods", "hmc")
    assert proc.returncode == 2 and "argument --methods: hmc, hmc-mixture and map run on FC-10" in (
        proc.stderr
    )
    proc = run("runs/approximations.py", "--quick", "--arch", "FC-100-100-10",
               "--csghmc-start", "map")  # fmt: skip
    assert proc.returncode == 2 and "need the MAP, which is computed on FC-10 only" in proc.stderr


def test_a_masked_rule_never_sees_the_unlit_pixels():
    """--mask-unlit's rules: an input on an unlit pixel changes nothing, on a lit one it
    does, for the rule, its draws and its mean-weights net alike; the name and fingerprint
    keep its attacks' artifacts apart."""
    from runs.approximations import masked
    from runs.epsilon_curves import Rule

    def net(x):
        return x[:, :3] * torch.tensor([1.0, 2.0, 3.0])

    rule = Rule("r", "plain", 1.0, net, "logits", 2, "print", lambda x, k: net(x).expand(k, -1, -1),
                net)  # fmt: skip
    lit = torch.tensor([True, False, True, True])
    out = masked(rule, lit)
    x = torch.ones(5, 4)
    poked = x.clone()
    poked[:, 1] = 50.0  # an unlit pixel
    for fn in (out.fn, out.mean, lambda v: out.draw(v, 2)):
        torch.testing.assert_close(fn(poked), fn(x))
        assert not torch.equal(fn(x + torch.tensor([1.0, 0, 0, 0])), fn(x))
    assert out.name == "r_masked" and out.fingerprint == {"rule": "print", "mask": "unlit pixels"}


def test_csghmc_temperature_quick():
    """Four cSGHMC settings (2 scales x 2 starts) on a slice: a row each with the draws'
    configurational temperature. A chain from a prior draw keeps the unlit pixels' weights
    at the prior, which reads 1 there; a chain from the MAP reads far colder in 8 epochs."""
    out = run_script("csghmc_temperature.py", "--no-progress")
    folder = Path(re.search(r"wrote (\S+)/csghmc_temperature\.csv", out).group(1))
    table = pd.read_csv(folder / "csghmc_temperature.csv").set_index("setting")
    assert list(table.index) == ["none lr 0.1 from prior", "none lr 0.1 from map",
                                 "fisher lr 0.1 from prior", "fisher lr 0.1 from map"]  # fmt: skip
    assert table["draws"].eq(2).all() and table["test_acc"].between(0, 100).all()
    prior, mode = table[table["start"] == "prior"], table[table["start"] == "map"]
    assert ((prior["temperature_unlit"] - 1).abs() < 0.15).all()
    assert (mode["temperature"].to_numpy() < 0.5 * prior["temperature"].to_numpy()).all()
    assert (folder / "csghmc_temperature.png").stat().st_size > 10_000


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
