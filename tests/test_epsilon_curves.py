"""runs/epsilon_curves.py: robust accuracy against eps, through its real command line in quick
mode (one run per module), and its pieces on the nets that run trained."""

import argparse
import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from runs import epsilon_curves as ec
from runs.study import intervals
from runs.study.pipeline import SeedResult, load_zoo
from runs.study.profiles import get_profile
from runs.study.training import load_data
from tests.conftest import run, run_script

MODELS = len(ec.QUICK_RULES)  # --quick attacks one rule of each kind, and what claims need
DETERMINISTIC = sum(kind.startswith("plain") or kind == "bnn-mu" for kind, _ in ec.QUICK_RULES)
CLAIMS = 5 + 1 + len(intervals.CONTROL_CLAIMS)  # per eps
COLUMNS = ["model", "kind", "param", "norm", "eps_126", "eps_255", "attack", "acc", "n"]


def run_quick(folder: Path) -> str:
    return run_script(
        "epsilon_curves.py", "--root", str(folder / "art"), "--results", str(folder / "res"),
        "--no-progress",
    )  # fmt: skip


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """(folder, stdout, curves, convergence) of one quick run."""
    folder = tmp_path_factory.mktemp("eps")
    out = run_quick(folder)
    curves = pd.read_csv(folder / "res" / "epsilon_curves_seed0.csv")
    convergence = pd.read_csv(folder / "res" / f"epsilon_convergence_seed0_n{ec.QUICK_N}.csv")
    return folder, out, curves, convergence


def test_quick_writes_every_model_at_every_eps(quick):
    folder, out, curves, _ = quick
    assert list(curves.columns[: len(COLUMNS)]) == COLUMNS
    assert {"steps", "restarts", "eot", "passes", "samples_per_call"} <= set(curves.columns)
    assert curves["model"].nunique() == MODELS and curves["n"].eq(ec.QUICK_N).all()
    counts = curves.groupby(["norm", "attack"])["model"].count()
    eps, linf, det = len(ec.QUICK_EPS), len(ec.QUICK_LINF), DETERMINISTIC
    assert counts.to_dict() == {
        ("L2", "clean"): MODELS,
        ("L2", "pgd"): MODELS * eps,
        ("L2", "eot-min-norm"): (MODELS - det) * eps,
        ("L2", "ddn-min-norm"): det * eps,
        **{("L2", a): MODELS * eps for a in ("apgd-ce", "apgd-dlr", ec.WORST)},
        ("L2", "apgd-dlr-targeted"): det * eps,
        **{("Linf", a): MODELS * linf for a in ("pgd", "apgd-ce", "apgd-dlr", ec.WORST)},
        ("Linf", "apgd-dlr-targeted"): det * linf,
        ("L2", ec.TRANSFER): (MODELS - det) * eps,  # from a stochastic rule's mean weights
        ("Linf", ec.TRANSFER): (MODELS - det) * linf,
    }
    masking = pd.read_csv(folder / "res" / "epsilon_masking_seed0.csv")
    assert len(masking) == 2 * MODELS and set(masking["norm"]) == {"L2", "Linf"}
    l2 = masking[masking["norm"] == "L2"]
    assert l2["acc_unbounded"].between(0, 100).all() and masking["passes"].dtype == bool
    # the unbounded DDN attack flips every test image of a plain net (no masking there)
    assert (l2.loc[l2["kind"].isin(["plain", "plain-matched"]), "acc_unbounded"] == 0).all()
    assert "Gradient-masking checks" in (folder / "res" / "epsilon_curves_seed0.md").read_text()
    # the doubled-budget check (--quick: at CONVERGENCE_EPS): a worst case never raised by it
    checks = pd.read_csv(folder / "res" / "epsilon_check_seed0.csv")
    assert len(checks) == MODELS and checks["eps_126"].eq(ec.CONVERGENCE_EPS).all()
    det_kinds = {"plain", "plain-matched", "bnn-mu", "plain-ensemble", "plain-adv"}
    exact = checks[checks["kind"].isin(det_kinds)]  # exact verdicts: no noise in the check
    assert (exact["worst_with_2x"] <= exact["acc"] + 1e-9).all() and (exact["drop"] >= 0).all()
    assert (exact["acc_rejudged"] == exact["acc"]).all()  # an exact verdict has no noise
    assert set(checks["strongest"]) <= {"pgd", "apgd-ce", "apgd-dlr", "apgd-dlr-targeted"}
    # for a deterministic rule the worst case is never above any attack of the ensemble
    attacked = curves[(curves["attack"] != "clean") & curves["kind"].isin(det_kinds)]
    by_point = attacked.groupby(["model", "norm", "eps_126"])
    for _, point in by_point:
        worst = point.loc[point["attack"] == ec.WORST, "acc"].item()
        assert worst <= point["acc"].min() + 1e-9
    assert curves["acc"].between(0, 100).all()
    l2_pgd = curves[(curves["attack"] == "pgd") & (curves["norm"] == "L2")]
    assert set(l2_pgd["eps_126"]) == set(ec.QUICK_EPS)
    # eps on [0, 1] pixels: pixels are /126 here, /255 there
    assert (curves["eps_255"] - curves["eps_126"] * 126 / 255).abs().max() < 1e-12
    pgd = curves[curves["attack"] == "pgd"].set_index("kind")
    # --quick: 2 weight samples per step and 4 per verdict, as calls of each rule
    assert set(pgd.loc["bnn", "eot"]) == {2} and set(pgd.loc["bnn", "passes"]) == {4}
    assert set(pgd.loc["bnn-mean10", "eot"]) == {1} and set(pgd.loc["bnn-mean100", "passes"]) == {1}
    assert set(pgd.loc["plain", "eot"]) == {1} and set(pgd.loc["plain", "passes"]) == {1}
    assert (curves.loc[curves["kind"] == "plain-ensemble", "param"] == 2).all()  # the pool
    assert (curves.loc[curves["kind"] == "plain-adv", "param"] == ec.ADVERSARY.eps).all()
    (adv,) = (folder / "art" / "quick" / "adv").glob("FC-100-100-10_lam0_seed0_*")
    assert repr(ec.ADVERSARY) in (adv / "meta.json").read_text()
    png = folder / "res" / "epsilon_curves_seed0.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (folder / "res" / "epsilon_curves_seed0.md").read_text()
    assert "Made by `python runs/epsilon_curves.py --quick" in md and "torch thread" in md
    assert "| bnn-pruned75-global -2" in out


def test_quick_combines_its_seed_and_gives_each_claim_an_interval_at_every_eps(quick):
    folder, _, curves, _ = quick
    mean = pd.read_csv(folder / "res" / "epsilon_curves.csv")
    assert mean["seeds"].eq(1).all() and len(mean) == len(curves)
    assert mean["acc"].tolist() == curves["acc"].tolist()  # one seed: its own curve
    table = pd.read_csv(folder / "res" / "epsilon_intervals.csv")
    sizes = len(ec.QUICK_EPS) + len(ec.QUICK_LINF)
    assert len(table) == CLAIMS * sizes and table["seeds"].eq(1).all()
    assert (table["ci_low"] <= table["estimate"]).all()
    assert (table["estimate"] <= table["ci_high"]).all()
    assert set(table["verdict"]) <= {"holds", "fails", "inconclusive"}
    assert "best BNN minus the adversarially trained net, at L2 eps 3" in set(table["claim"])
    assert (folder / "res" / "epsilon_curves.png").stat().st_size > 10_000
    transfer = pd.read_csv(folder / "res" / "transfer_adv.csv")  # the reference defence
    assert transfer["source"].nunique() == 12 and set(transfer["multiplier"]) == {1, 1.5, 2, 3}
    assert transfer["acc"].between(0, 100).all() and len(transfer) == 12 * 4
    assert (
        "The adversarially trained net under transfer"
        in (folder / "res" / "epsilon_curves.md").read_text()
    )


def test_claims_pick_the_best_model_on_even_images_and_score_it_on_odd_ones():
    """Four images: the best BNN and the best plain net are picked at each eps on images 0
    and 2, and the claims that pick are scored on images 1 and 3; the others on all four."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    robust = {
        ("bnn", -3.0): {1.0: t(1, 0, 0, 0), 2.0: t(0, 0, 0, 0)},
        ("bnn", -2.0): {1.0: t(1, 1, 1, 0), 2.0: t(1, 0, 0, 0)},  # best at both
        ("bnn-mean100", -3.0): {1.0: t(1, 1, 0, 0), 2.0: t(0, 1, 0, 0)},
        ("bnn-pruned75-global", -2.0): {1.0: t(0, 0, 0, 1), 2.0: t(0, 0, 0, 0)},
        ("plain", 0.0): {1.0: t(1, 1, 1, 1), 2.0: t(0, 0, 0, 0)},  # best at eps 1
        ("plain", 1.0): {1.0: t(0, 0, 0, 0), 2.0: t(0, 0, 1, 1)},  # best at eps 2
        ("plain-ensemble", 10): {1.0: t(1, 0, 0, 0), 2.0: t(0, 0, 0, 1)},
        ("plain-adv", 2.0): {1.0: t(1, 1, 1, 0), 2.0: t(1, 1, 1, 1)},
    }
    got = {k: (v[0][0].tolist(), v[0][1].tolist()) for k, v in ec.claims(robust).items()}
    odd, every = [1, 3], [0, 1, 2, 3]
    assert got == {
        "best BNN minus best plain net, at L2 eps 1": (odd, [0, -1]),
        "best BNN minus best plain net, at L2 eps 2": (odd, [0, -1]),
        "75%-pruned BNN (global) minus best plain net, at L2 eps 1": (odd, [-1, 0]),
        "75%-pruned BNN (global) minus best plain net, at L2 eps 2": (odd, [0, -1]),
        "best BNN minus the adversarially trained net, at L2 eps 1": (odd, [0, 0]),
        "best BNN minus the adversarially trained net, at L2 eps 2": (odd, [-1, -1]),
        "100-sample ensemble minus one sample (Table 3's BNN), at L2 eps 1": (every, [0, 1, 0, 0]),
        "100-sample ensemble minus one sample (Table 3's BNN), at L2 eps 2": (every, [0, 1, 0, 0]),
        "100-sample ensemble minus the plain-net ensemble, at L2 eps 1": (every, [0, 1, 0, 0]),
        "100-sample ensemble minus the plain-net ensemble, at L2 eps 2": (every, [0, 1, 0, -1]),
    }
    linf = ec.claims({k: {2.0 * ec.X_MAX * 0.05: v[1.0]} for k, v in robust.items()}, "Linf")
    assert "best BNN minus best plain net, at Linf eps 0.1" in linf


def test_convergence_sweeps_both_step_rules_and_both_norms_and_meets_the_curve(quick):
    folder, out, curves, conv = quick
    assert conv["acc"].between(0, 100).all() and conv["n"].eq(ec.QUICK_N).all()
    linf = ec.QUICK_LINF[0] * ec.X_MAX
    assert set(zip(conv["norm"], conv["eps_126"])) == {("L2", ec.CONVERGENCE_EPS), ("Linf", linf)}
    assert set(conv["attack"]) == set(ec.FAMILIES) == {"pgd", "apgd-ce"}
    bnn, plain = conv[conv["kind"] == "bnn"], conv[conv["kind"] == "plain"]
    assert set(zip(conv["kind"], conv["param"])) == ec.QUICK_CHECKED
    assert sorted(bnn["varied"].unique()) == ["eot", "restarts", "steps"]
    assert sorted(plain["varied"].unique()) == ["restarts", "steps"]  # no eot: deterministic
    assert len(bnn) == 6 * 2 * 2 and len(plain) == 4 * 2 * 2  # settings x norms x families
    # at the budget (5 steps, 2 samples, 1 restart) a point is the curve's own result
    for (kind, param), (norm, eps), attack in itertools.product(
        ec.QUICK_CHECKED, [("L2", ec.CONVERGENCE_EPS), ("Linf", linf)], ec.FAMILIES
    ):
        cell = (curves["kind"] == kind) & (curves["param"] == param) & (curves["norm"] == norm)
        cell &= (curves["attack"] == attack) & (curves["eps_126"] == eps)
        mine = conv[(conv["kind"] == kind) & (conv["norm"] == norm) & (conv["attack"] == attack)]
        mine = mine[(mine["varied"] == "steps") & (mine["value"] == 5)]
        assert mine["acc"].item() == curves.loc[cell, "acc"].item()
    flat = pd.read_csv(folder / "res" / f"epsilon_flatness_seed0_n{ec.QUICK_N}.csv")
    assert len(flat) == (3 + 2) * 2 * 2  # per model, norm, family and setting
    assert (flat["drop"] == flat["acc_budget"] - flat["acc_lowest_beyond"]).all()
    assert flat["flat"].eq(flat["drop"] <= ec.FLAT).all()
    assert "curves are flat at the budget used" in out


def test_sweep_models_parse_and_an_unknown_one_is_named(quick):
    assert ec.model_key("plain-matched:0") == ("plain-matched", 0.0)
    assert ec.model_key("bnn:-2.5") == ("bnn", -2.5)
    for bad in ("bnn", ":1", "bnn:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="KIND:PARAM"):
            ec.model_key(bad)
    folder = quick[0]
    proc = run(
        "runs/epsilon_curves.py", "--quick", "--root", str(folder / "art"), "--results",
        str(folder / "bad"), "--sweep-models", "bnn:-7", "--no-progress",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--sweep-models: no model [('bnn', -7.0)]" in proc.stderr and "bnn:-3" in proc.stderr


def test_the_worst_case_is_no_weaker_than_its_members(quick):
    """Each member is judged on fresh draws, so the per-example worst case, judged on fresh
    draws again, sits at or below the weakest member's accuracy: exactly on a deterministic
    rule, within the verdicts' noise on a stochastic one (a minimum-norm r judged on the
    draws that found it once made the worst case 10 points weaker than APGD alone)."""
    _, _, curves, _ = quick
    fixed = ("pgd", "apgd-ce", "apgd-dlr", "apgd-dlr-targeted")
    for (model, norm, eps), part in curves.groupby(["model", "norm", "eps_126"]):
        members = part[part["attack"].isin(fixed)]["acc"]
        if members.empty:
            continue
        worst = part.loc[part["attack"] == ec.WORST, "acc"].item()
        noise = 0.0 if part["samples_per_call"].iloc[0] == 0 else 15.0  # 10 images, 4 draws
        assert worst <= members.min() + noise + 1e-9, (model, norm, eps, worst, members.min())


def test_flatness_reads_the_drop_beyond_the_budget():
    conv = pd.DataFrame({"model": "m", "kind": "bnn", "param": -3.0, "norm": "L2",
                         "eps_126": 1.5, "eps_255": 0.3, "attack": "pgd", "varied": "steps",
                         "value": [10, 50, 100, 500], "acc": [60.0, 50.0, 50.5, 48.5]})  # fmt: skip
    (row,) = ec.flatness(conv, ec.Budget(eot=10, passes=32, steps=50)).to_dict("records")
    assert row["acc_budget"] == 50.0 and row["acc_lowest_beyond"] == 48.5
    assert row["drop"] == 1.5 and not row["flat"] and row["max_rise"] == 0.5
    conv.loc[3, "acc"] = 49.5
    assert ec.flatness(conv, ec.Budget(eot=10, passes=32, steps=50))["flat"].item()


def test_deterministic_accuracy_does_not_rise_with_eps(quick):
    _, _, curves, _ = quick
    fixed = curves[curves["kind"].isin(["plain", "plain-ensemble"]) & (curves["norm"] == "L2")]
    for model, rows in fixed.groupby("model"):
        for attack in ("pgd", "ddn-min-norm"):
            part = rows[rows["attack"].isin(["clean", attack])].sort_values("eps_126")
            assert part["acc"].is_monotonic_decreasing, (model, attack, list(part["acc"]))
            assert part["acc"].iloc[-1] < part["acc"].iloc[0]  # eps 3 breaks some


@pytest.mark.parametrize("kind, param, tolerance", [("plain", 0.0, 0.0), ("bnn", -3.0, 4.0)])
def test_tiny_eps_gives_clean_accuracy(quick, tmp_path, kind, param, tolerance):
    folder = quick[0]
    profile = get_profile("quick")
    data = load_data(profile)
    zoo, prints = load_zoo(profile, data, folder / "art" / "quick", 0, True, SeedResult())
    rule = {(r.kind, r.param): r for r in ec.rules(zoo, prints)}[kind, param]
    x, y = data.test.x[:200], data.test.y[:200]
    budget = ec.Budget(eot=2, passes=32, steps=5)
    clean = ec.clean_accuracy(rule, x, y, budget.passes, seed=0)
    robust, per_example = ec.pgd_accuracy(rule, x, y, 1e-4, ec.settings(rule, budget, 0), tmp_path)
    assert per_example.shape == (200,)
    assert abs(100 * float(per_example.double().mean()) - robust) < 1e-9
    assert 10 < clean < 100  # the net learnt something, so a mismatch would show
    assert abs(robust - clean) <= tolerance


def test_rerun_reuses_the_cache_and_redoes_only_what_is_missing(quick):
    folder, _, curves, conv = quick
    pgd = folder / "art" / "quick" / "epsilon-pgd"
    lost = next(p for p in pgd.iterdir() if "_rho-3_seed0_ens10_eps3_" in p.name)
    shutil.rmtree(lost)  # as if the first run had been killed before that point
    seeds = folder / "res" / "epsilon" / "seeds"  # and seed 0 saved again as seed 7
    shutil.copytree(seeds / "0", seeds / "7")
    meta = json.loads((seeds / "7" / "seed.json").read_text())
    (seeds / "7" / "seed.json").write_text(json.dumps(meta | {"seed": 7}))
    out = run_quick(folder)
    assert f"combined with the seeds saved in {seeds}: [7]" in out
    lines = out.splitlines()
    (saved,) = [line for line in lines if line.startswith("saved")]
    assert saved.startswith(f"saved {lost} ")
    reused = [line for line in lines if line.startswith("reused")]
    assert sum("epsilon-pgd" in line for line in reused) >= MODELS * len(ec.QUICK_EPS) - 1
    # seeded: the redone point, and so every table, comes out the same
    pd.testing.assert_frame_equal(pd.read_csv(folder / "res" / "epsilon_curves_seed0.csv"), curves)
    pd.testing.assert_frame_equal(
        pd.read_csv(folder / "res" / f"epsilon_convergence_seed0_n{ec.QUICK_N}.csv"), conv
    )
    # the saved seed joins: the same means, intervals over two seeds
    mean = pd.read_csv(folder / "res" / "epsilon_curves.csv")
    assert mean["seeds"].eq(2).all() and (mean["sd"].abs() < 1e-9).all()
    pd.testing.assert_series_equal(mean["acc"], curves["acc"], check_names=False, rtol=1e-9)
    table = pd.read_csv(folder / "res" / "epsilon_intervals.csv")
    assert table["seeds"].eq(2).all() and table["method"].eq(intervals.METHOD).all()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--n", "0"], "--n"),
        (["--eps", "1", "-0.5"], "--eps"),
        (["--eps", "nan"], "--eps"),
        (["--profile", "huge"], "--profile"),
        (["--profile", "quick", "--n", "301"], "--n"),
    ],
)
def test_bad_arguments_name_the_argument(argv, named, capsys):
    with pytest.raises(SystemExit) as stop:
        ec.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1


def test_untrained_models_are_not_trained_silently(tmp_path):
    with pytest.raises(SystemExit, match="runs/reproduce.py --profile quick --seeds 3"):
        ec.main(["--profile", "quick", "--seeds", "3", "--root", str(tmp_path)])
    assert not any(tmp_path.rglob("meta.json"))


def test_masking_checks_fail_where_accuracy_rises_or_transfer_wins():
    """Known answers: a model whose worst case rises with eps, or that transfer beats, or
    that the unbounded attack leaves above 0, fails; a clean one passes."""

    def curve(model, accs, transfer=None, passes=1):
        rows = [
            {
                "model": model,
                "kind": "plain",
                "param": 0.0,
                "norm": "L2",
                "eps_126": e,
                "attack": ec.WORST,
                "acc": a,
                "passes": passes,
            }
            for e, a in zip((1, 2), accs)
        ]
        rows += [dict(r, attack="pgd") for r in rows]
        if transfer is not None:
            rows += [dict(r, attack=ec.TRANSFER, acc=transfer) for r in rows[:2]]
        return rows  # fmt: skip

    curves = pd.DataFrame(
        curve("ok", (50, 20), transfer=60) + curve("rises", (20, 50)) + curve("tr", (50, 40), 30)
    ).assign(kind=lambda f: f["model"])
    masking = ec.masking_checks(curves, pd.DataFrame(), {("ok", 0.0): 0.0, ("rises", 0.0): 0.0,
                                                         ("tr", 0.0): 5.0})  # fmt: skip
    got = masking.set_index("model")
    assert got.loc["ok", "passes"] and not got.loc["rises", "passes"]
    assert not got.loc["tr", "passes"] and got.loc["tr", "whitebox_minus_transfer"] == 20
    assert got.loc["rises", "max_rise_with_eps"] == 30
    # a model whose accuracy rises with more steps fails once the sweep has run on it
    flat = pd.DataFrame({"model": ["ok", "ok"], "norm": "L2", "varied": ["steps", "eot"],
                         "max_rise": [0.0, 5.0]})  # fmt: skip
    swept = ec.masking_checks(curves, pd.DataFrame(), {("ok", 0.0): 0.0}, flat).set_index("model")
    assert swept.loc["ok", "passes"] and swept.loc["ok", "max_rise_with_steps"] == 0.0
    flat.loc[0, "max_rise"] = 2.0
    swept = ec.masking_checks(curves, pd.DataFrame(), {("ok", 0.0): 0.0}, flat).set_index("model")
    assert not swept.loc["ok", "passes"]


def test_the_doubled_budget_check_judges_both_picks_on_the_same_draws():
    """A member never picked changes no verdict (the drop is paired); a member that wins on
    some images changes only theirs."""

    def noisy(x):  # one fresh draw of a stochastic rule: (1, B, 2) logits
        return (x[:, :2] + torch.randn(len(x), 2)).unsqueeze(0)

    rule = ec.Rule("r", "bnn", -3.0, noisy, "logits", 1, "print")
    x, y = torch.zeros(50, 4), torch.zeros(50, dtype=torch.long)
    r = torch.zeros(50, 4)
    committed = (torch.full((50,), 0.5, dtype=torch.float64), r)
    never = (torch.ones(50, dtype=torch.float64), torch.full((50, 4), 9.0))  # never the pick
    alone = ec._rejudged(rule, x, y, [committed], 200, seed=3)
    assert 0.35 < alone.mean() < 0.65  # the verdict is noisy ...
    assert torch.equal(ec._rejudged(rule, x, y, [committed, never], 200, seed=3), alone)
    wins = (torch.where(torch.arange(50) < 10, 0.0, 1.0).double(), r + torch.tensor([0, 5.0, 0, 0]))
    both = ec._rejudged(rule, x, y, [committed, wins], 200, seed=3)
    assert torch.equal(both[10:], alone[10:]) and (both[:10] < 0.05).all()  # ... but paired
