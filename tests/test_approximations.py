"""The exact posterior against its approximations: runs/exact_posterior.py,
runs/approximations.py and runs/csghmc_temperature.py in quick mode."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import run, run_script


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


@pytest.fixture(scope="module")
def sets_root(tmp_path_factory):
    """One folder for the quick source nets and their attack sets, which the approximations
    runs on either architecture share: the first run builds them, the next loads them."""
    return str(tmp_path_factory.mktemp("quick-sets"))


def test_approximations_quick(sets_root):
    """Every method on FC-10 through the verdict's harness: clean scores, white-box worst
    case in both norms, transfer at x1-x3, and each method against HMC with an interval."""
    from runs.approximations import METHODS, REFERENCE

    out = run_script("approximations.py", "--no-progress", "--csghmc-scale", "fisher",
                     "--csghmc-start", "map", "--sets-root", sets_root)  # fmt: skip
    folder = Path(re.search(r"(\S+)/hmc-chain/", out).group(1))
    assert Path(sets_root, "quick").is_dir() and not (folder / "quick").exists()
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


def test_approximations_quick_on_a_deeper_net(sets_root):
    """FC-100-100-10: the methods but HMC, MC dropout behind every hidden layer too; asking
    for HMC there is refused by name."""
    out = run_script("approximations.py", "--no-progress", "--arch", "FC-100-100-10",
                     "--methods", "csghmc", "mc-dropout", "plain",
                     "--sets-root", sets_root)  # fmt: skip
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
    # a second seed beside the first: its own files, and the seeds pooled per setting
    run_script("csghmc_temperature.py", "--no-progress", "--seed", "1", "--results", str(folder))
    second = pd.read_csv(folder / "csghmc_temperature_seed1.csv").set_index("setting")
    pooled = pd.read_csv(folder / "csghmc_temperature_seeds.csv").set_index("setting")
    assert pooled["seeds"].eq(2).all() and list(pooled.index) == list(table.index)
    both = pd.concat([table["temperature"], second["temperature"]], axis=1)
    assert pooled["temperature_mean"].to_numpy() == pytest.approx(both.mean(axis=1).to_numpy())
    assert (pooled["temperature_min"] == both.min(axis=1)).all() and (second["seed"] == 1).all()
