"""runs/reproduce.py, the whole study, through its real command line in quick mode: killed,
resumed, rerun and combined over seeds; and its profiles."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from runs.reproduce import main as reproduce
from runs.study import intervals, paper
from runs.study.pipeline import table_config
from runs.study.profiles import PROFILES, get_profile
from runs.study.results import combine
from runs.study.tables import TRANSFER_MULTIPLIERS, WHITEBOX_MULTIPLES
from runs.study.zoo import CONTROLS
from tests.conftest import ROOT, run

QUICK = get_profile("quick")
# sources, the paper protocol's own sources, BNNs, baselines, the pool, the training controls,
# the plain nets trained as the BNNs
NETS = 12 + 12 * (QUICK.paper_source_epochs is not None) + len(paper.RHO_INITS) + 4
NETS += QUICK.pool + len(CONTROLS) * len(QUICK.control_rhos) + 4
# beside the BNNs and baselines, every model scores: the BNNs' posterior means, the training
# controls and the plain nets trained as the BNNs
SCORED_CONTROLS = len(paper.RHO_INITS) + len(CONTROLS) * len(QUICK.control_rhos) + 4


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
