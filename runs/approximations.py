"""The exact posterior of FC-10 against its approximations, on the verdict's harness: is a
robustness gain Bayes, or the approximation?

    python runs/approximations.py                          # every method, seed 0
    python runs/approximations.py --seeds 0 1 2 --methods csghmc vi-paper vi-adam plain
    python runs/approximations.py --arch FC-100-100-10 --methods csghmc vi-adam plain
    python runs/approximations.py --quick                  # a slice, tiny budgets, temp dirs

FC-10 is Bayesian multinomial logistic regression (7,850 weights), where HMC is exact.
--arch FC-100-100-10 runs every method but HMC, whose full-batch chains on that net are
GPU-only and not yet run; cSGHMC is to stand in for it there once it agrees with HMC on
FC-10, which it does not yet. Every
method sees the 50,000 training images; those that train do so for --epochs epochs and keep
the epoch of best validation accuracy, so the budgets match:
- hmc, hmc-mixture: the exact posterior under N(0, 1) weights, and under the paper's
  scale-mixture prior (eq. 2): the NUTS chains of runs/exact_posterior.py (its options);
- map: that posterior's mode under N(0, 1), by L-BFGS on every training image, the point
  estimate hmc averages around, trained to convergence where the others stop after
  --epochs;
- csghmc: cyclical SG-MCMC (pyro_bnn.sgmcmc) under N(0, 1), --cycles cycles over --epochs,
  the last quarter of each cycle noisy (--csghmc-noise: a longer noisy part) and a draw
  kept after each of its epochs; it keeps every draw, not a best epoch. On FC-10,
  --csghmc-scale fisher preconditions it by fisher_scale at the MAP and --csghmc-start map
  starts it there (runs/csghmc_temperature.py reads how hot each setting's draws are);
- vi-paper: the paper's VI (softplus-normal guide, rho_init -3, scale-mixture prior, SGD
  lr 1e-3), whose sigma barely moves;
- vi-adam: the same guide under N(0, 1) trained by Adam (lr 1e-3), whose sigma trains;
- lowrank: a rank-10 low-rank Gaussian guide under N(0, 1), Adam;
- mc-dropout: the plain net with dropout (--dropout) on its input and after every hidden
  ReLU, the plain nets' SGD, dropout kept on at test time (pyro_bnn.MCDropout: each draw's
  masks shared by the batch, as every posterior's weight draw is);
- plain: the plain net (lambda 0), by the paper's SGD; plain-adam: by Adam (lr 1e-3), which
  goes further in the same epochs, as the Adam-trained guides do; ensemble: the mean of
  --pool plain nets.
A stochastic method decides by its posterior predictive, the mean probability of --draws
weight draws (eq. 7), and its mean-weights net is scored beside it (<method>-mu: the
posterior mean, or MC dropout's net with dropout off), the control that tells what the
sampling adds to where training left the weights (the claims '<method> minus
<method>-mu'). Every rule gets the deterministic rules'
--restarts restarts (FC-10 is cheap); APGD-T is run on the deterministic ones only. A posterior's
weight draws' median sd says how far it is from a point estimate,
over every weight, and apart on the pixels some training image lights and on those none
does (where the data leave the posterior at the prior, and an attack can add noise to
every draw's logits); the norm of its mean weights' first layer on the lit pixels
(mean_weight_norm_lit, and the plain nets' own) says how hard the net it centres on
presses on the inputs. Each posterior with a prior (all but MC dropout) reads its draws'
configurational temperature (pyro_bnn.mcmc.configurational_temperature, on the training
images, centred on FC-10's MAP, or on 0): 1 under its exact posterior, above 1 where its
draws spread wider than that posterior, below 1 where they spread less.

Scored on the hour profile's test images: clean accuracy, NLL and ECE (all of them);
white-box robust accuracy on the first --n, the per-example worst case over the attack
ensemble of runs/epsilon_curves.py (PGD, APGD-CE/DLR with EOT, the minimum-norm attack,
transfer from the mean weights) in L2 (--eps) and L-inf (--linf); and transfer: the
rigorous attack sets of the hour profile's 12 source nets of the same seed (runs/reproduce.py
--profile hour) at x1-x3. Each method minus hmc is a paired claim with its interval over
seeds and images (runs.study.intervals), and so is each method minus the plain net. Seeds
run in different sittings add up, as in
runs/epsilon_curves.py (<results>/seeds/).

--mask-unlit is a control: every rule first sets to 0 the pixels that no training image
lights, where the data leave a posterior's weights at the prior, so an attack there adds
noise to every weight draw's logits.

Every trained method, chain and attack is an artifact under --root (default
runs/artifacts/full; the chains are runs/exact_posterior.py's), so a killed run resumes.
Writes approximations.csv/.md (per method, mean over seeds), approximations_intervals.csv,
approximations_attacks.csv (each attack of the ensemble on its own) and approximations.png
to --results (default runs/results/approximations/, and its masked/ with --mask-unlit).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from pyro_bnn import BayesianMLP, MCDropout, evaluate  # noqa: E402
from pyro_bnn.artifacts import atomic_write, cached  # noqa: E402
from pyro_bnn.attacks import perturb  # noqa: E402
from pyro_bnn.data import X_MAX  # noqa: E402
from pyro_bnn.mcmc import (  # noqa: E402
    PosteriorSamples,
    configurational_temperature,
    map_estimate,
)
from pyro_bnn.nets import MLP  # noqa: E402
from pyro_bnn.predict import posterior_mean, sample_weights  # noqa: E402
from pyro_bnn.priors import make_prior  # noqa: E402
from pyro_bnn.sgmcmc import fisher_scale, fit_csghmc  # noqa: E402
from pyro_bnn.train import fit_torch  # noqa: E402
from runs import epsilon_curves as harness  # noqa: E402
from runs import exact_posterior  # noqa: E402
from runs.study import intervals, pipeline, tables  # noqa: E402
from runs.study.args import (  # noqa: E402
    Parser,
    device,
    exit_timed,
    positive_float,
    positive_int,
    started,
)
from runs.study.config import BNN, PLAIN  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.naming import artifact_path  # noqa: E402
from runs.study.pipeline import SeedResult  # noqa: E402
from runs.study.plots import save_png  # noqa: E402
from runs.study.profiles import get_profile  # noqa: E402
from runs.study.results import other_seeds, save_seed  # noqa: E402
from runs.study.sources import train_sources  # noqa: E402
from runs.study.training import load_data, matched, pool_seed  # noqa: E402
from runs.study.zoo import train_baseline, train_bnns  # noqa: E402

HERE = Path(__file__).resolve().parent
ARCHS = ("FC-10", "FC-100-100-10")  # HMC on the first only
METHODS = ("hmc", "hmc-mixture", "map", "csghmc", "vi-paper", "vi-adam", "lowrank", "mc-dropout",
           "plain", "plain-adam", "ensemble")  # fmt: skip
PLAIN_METHODS = ("plain", "plain-adam", "ensemble")
REFERENCE = "hmc"  # the exact posterior every claim is measured against
BASELINE = "plain"  # and the plain net, the point estimate every posterior is weighed by
HMC_PRIOR = {"hmc": "normal", "hmc-mixture": "scale-mixture"}
EXACT = (*HMC_PRIOR, "map")  # the methods on FC-10 only
VI = {  # method -> (prior, guide, optimizer)
    "vi-paper": ("scale-mixture", "softplus-normal", "sgd"),
    "vi-adam": ("normal", "softplus-normal", "adam"),
    "lowrank": ("normal", "lowrank", "adam"),
}
RHO_INIT = -3.0  # the guides' start, Table 3's BNN
SAMPLE_FRACTION = 0.25  # of each cSGHMC cycle: a draw kept after each of its epochs
EPS = (0.5, 1.0, 1.5, 2.0, 3.0)  # L2 budgets, /126 scale
LINF = (0.05, 0.1, 0.2, 0.3)  # L-inf budgets on [0, 1] pixels
TRANSFER = (1.0, 2.0, 3.0)  # multiples of the rigorous sets' r
SD_DRAWS = 200  # weight draws behind a method's median weight sd and its temperature
KIND = "approximations"  # the artifact kind of every net trained here


def parse(argv: list[str] | None):
    p = Parser(prog="runs/approximations.py", description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHS, default=ARCHS[0])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                   help="default: every method the arch has")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds, e.g. 0 1 2")
    p.add_argument("--epochs", type=positive_int, default=100, help="every trained method's")
    p.add_argument("--cycles", type=positive_int, default=5, help="cSGHMC's cycles")
    p.add_argument("--csghmc-lr", type=positive_float, default=None,
                   help="cSGHMC's first step size of a cycle (default: fit_csghmc's)")  # fmt: skip
    p.add_argument("--csghmc-noise", type=positive_float, default=None,
                   help=f"the last part of each cSGHMC cycle that adds noise, in "
                   f"[{SAMPLE_FRACTION}, 1] (default: the sampling part)")  # fmt: skip
    p.add_argument(
        "--csghmc-scale",
        choices=("none", "fisher"),
        default="none",
        help="cSGHMC's preconditioner: none, or fisher_scale at the MAP (FC-10)",
    )
    p.add_argument(
        "--csghmc-start",
        choices=("prior", "map"),
        default="prior",
        help="where each cSGHMC chain starts: a prior draw, or the MAP (FC-10)",
    )
    p.add_argument("--dropout", type=positive_float, default=0.2, help="MC dropout's rate")
    p.add_argument("--pool", type=positive_int, default=10, help="plain nets in the ensemble")
    p.add_argument("--draws", type=positive_int, default=100, help="per posterior predictive")
    p.add_argument("--n", type=positive_int, default=500, help="white-box test images")
    p.add_argument("--restarts", type=positive_int, default=harness.Budget.det_restarts,
                   help="of every white-box attack, stochastic rules too")  # fmt: skip
    p.add_argument("--eps", type=positive_float, nargs="+", default=list(EPS), help="L2, /126")
    p.add_argument("--linf", type=positive_float, nargs="+", default=list(LINF), help="[0, 1]")
    p.add_argument("--profile", default="hour", help="the test images' and the sets' profile")
    p.add_argument(
        "--mask-unlit", action="store_true",
        help="a control: every rule sets the pixels no training image lights to 0 first",
    )  # fmt: skip
    exact_posterior.add_chain_options(p)
    p.add_argument("--root", default=str(HERE / "artifacts" / "full"))
    p.add_argument("--sets-root", default=None,
                   help="the profile's source nets and their attack sets (default runs/artifacts; "
                        "with --quick a temp dir)")  # fmt: skip
    p.add_argument("--results", default=None, help="default runs/results/approximations/ "
                   "(with --mask-unlit, its masked/)")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="quick profile, tiny budgets, temp dirs")
    args = p.parse_args(argv)
    if not 0 < args.dropout < 1:
        p.error(f"argument --dropout: must be in (0, 1), got {args.dropout}")
    if args.csghmc_noise is not None and not SAMPLE_FRACTION <= args.csghmc_noise <= 1:
        p.error(f"argument --csghmc-noise: must be in [{SAMPLE_FRACTION}, 1], got "
                f"{args.csghmc_noise}")  # fmt: skip
    exact = args.arch == ARCHS[0]
    if args.methods is None:
        args.methods = [m for m in METHODS if exact or m not in EXACT]
    if not exact and (args.csghmc_scale, args.csghmc_start) != ("none", "prior"):
        p.error(f"arguments --csghmc-scale fisher and --csghmc-start map need the MAP, which "
                f"is computed on FC-10 only, not on {args.arch}")  # fmt: skip
    if not exact and set(args.methods) & set(EXACT):
        p.error(f"argument --methods: hmc, hmc-mixture and map run on FC-10 only; full-batch "
                f"HMC on {args.arch} is GPU-only and not yet run")  # fmt: skip
    default = HERE / "results" / "approximations"
    default = default if exact else default / args.arch
    args.results = args.results or str(default / "masked" if args.mask_unlit else default)
    if args.quick:
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.profile, args.epochs, args.cycles, args.pool, args.draws = "quick", 2, 2, 2, 4
        args.n, args.eps, args.linf, args.restarts = 10, [1.5], [0.3], 1
        args.chains, args.samples, args.warmup, args.kernel, args.steps = 2, 8, 8, "hmc", 4
        args.mass = "diag"  # as runs/exact_posterior.py --quick
        args.root = args.results = temp
        args.sets_root = args.sets_root or temp
    args.sets_root = args.sets_root or str(HERE / "artifacts")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = started(args, "runs/approximations.py", argv)
    profile = get_profile(args.profile)
    data = load_data(profile).to(args.device)
    results = Path(args.results)
    budget = harness.Budget(profile.eot_k, profile.eot_passes, restarts=args.restarts,
                            det_restarts=args.restarts)  # fmt: skip
    match = {
        "arch": args.arch, "profile": profile.name, "n": args.n, "eps": sorted(args.eps),
        "linf": sorted(args.linf), "methods": args.methods, "epochs": args.epochs,
        "draws": args.draws, "budget": asdict(budget), "mask_unlit": args.mask_unlit,
    }  # fmt: skip
    match = json.loads(json.dumps(match))  # as seed.json reads back
    frames = {}
    for seed in args.seeds:
        frames[seed] = seed_tables(args, seed, profile, data, budget)
        save_seed(frames[seed], results, seed, match | {"command": command})
    for seed, (saved, _) in other_seeds(results, match, frames).items():
        frames[seed] = saved
    seeds = sorted(frames)
    scores = pd.concat([frames[s]["scores"].assign(seed=s) for s in seeds])
    made = [frames[s]["claims"] for s in seeds if len(frames[s]["claims"])]
    claims = intervals.summarise(made) if made else pd.DataFrame()
    mean = scores.groupby(["method", "metric"], sort=False)["value"].agg(["mean", "std"])
    order = list(dict.fromkeys(scores["method"]))  # each method, then its mean-weights net
    table = mean["mean"].unstack("metric").reindex(order)
    atomic_write(results / "approximations.csv", lambda tmp: table.to_csv(tmp))
    atomic_write(results / "approximations_intervals.csv",
                 lambda tmp: claims.to_csv(tmp, index=False))  # fmt: skip
    attacks = pd.concat(
        [frames[s]["attacks"].assign(seed=s) for s in seeds if "attacks" in frames[s]]
    )
    atomic_write(results / "approximations_attacks.csv",
                 lambda tmp: attacks.to_csv(tmp, index=False))  # fmt: skip
    footer = (
        f"Made by `{command}` on {args.device} ({describe(args.device)}): seeds {seeds}; "
        f"profile {profile.name}'s test images, white-box on the first {args.n}; every trained "
        f"method {args.epochs} epochs, best validation epoch kept; a stochastic method's "
        f"decision is the mean of {args.draws} weight draws. White-box: the per-example worst "
        "case over runs/epsilon_curves.py's attack ensemble (L2 eps on the /126 scale, L-inf "
        "on [0, 1] pixels). Claims: paired differences per image, with "
        f"{intervals.METHOD if len(seeds) > 1 else 'a t-interval over images (one seed)'}.\n"
    )
    against = (
        claims[["claim", "estimate", "ci_low", "ci_high", "seeds", "verdict"]].to_markdown(
            index=False, floatfmt=".1f"
        )
        if len(claims)
        else f"(none: neither {REFERENCE} nor {BASELINE} is among --methods)"
    )
    markdown = (
        "Per method (mean over seeds):\n\n"
        + table.T.to_markdown(floatfmt=".3g")
        + f"\n\nEach method minus the exact posterior ({REFERENCE}) and minus the plain net "
        f"({BASELINE}), in points:\n\n" + against + "\n\n" + footer
    )
    atomic_write(results / "approximations.md", lambda tmp: tmp.write_text(markdown))
    plot(scores, order, results / "approximations.png")
    print(markdown)
    return 0


def seed_tables(args, seed: int, profile, data, budget) -> dict[str, pd.DataFrame]:
    """One seed: every method's scores (method, metric, value) and the paired claims
    (runs.study.intervals.claim_rows) against the reference."""
    sets = transfer_sets(args, profile, data, seed)
    rows, correct, argmax = [], {}, {}  # correct: method -> label -> [(index, (n,) correct)]
    attacks = []  # each attack of the ensemble, per method and eps
    names = []  # every rule scored: each method, then its mean-weights net
    for method in tqdm(args.methods, desc=f"methods, seed {seed}", disable=args.no_progress):
        start = time.perf_counter()
        rule, info = build(method, args, data, seed)
        pairs = [(method, rule, info)]
        if rule.mean is not None:  # the control: the same weights' mean, deterministic
            mu = harness.Rule(f"{rule.name}_mu", f"{method}-mu", 0, rule.mean, "logits", 0,
                              {"rule": rule.fingerprint, "weights": "mean"})  # fmt: skip
            pairs.append((f"{method}-mu", mu, {}))
        for name, one, facts in pairs:
            if args.mask_unlit:
                one = masked(one, data.train.lit())
            names.append(name)
            rows += [{"method": name, "metric": k, "value": v} for k, v in facts.items()]
            probs = decide(one, data.test.x)  # (N, C)
            clean = evaluate(lambda _, probs=probs: probs, data.test.x, data.test.y)
            argmax[name] = probs.argmax(-1).cpu()
            rows += [{"method": name, "metric": k, "value": float(clean[k])}
                     for k in ("acc", "nll", "ece")]  # fmt: skip
            rows[-3]["value"] *= 100  # accuracy in points, as every other table
            found, correct[name] = white_box(one, args, data, budget, profile, seed)
            attacks += [m | {"method": name} for m in found]
            rows += [{"method": name, "metric": label, "value": 100 * float(ok[0][1].mean())}
                     for label, ok in correct[name].items()]  # fmt: skip
            for mult in TRANSFER:
                label = f"transfer x{mult:g}"
                per_set = []
                for s in sets:
                    x_set = data.split(s.split).x[s.tensors["index"]]
                    x_adv = perturb(x_set, s.tensors["r"], scale=mult)
                    per_set.append((s.tensors["index"].cpu(), _correct(one, x_adv, s.tensors["y"])))
                acc = 100 * float(torch.cat([h for _, h in per_set]).mean())
                rows.append({"method": name, "metric": label, "value": acc})
                correct[name][label] = per_set
        rows.append({"method": method, "metric": "score_s", "value": time.perf_counter() - start})
    claims = {
        f"{method} minus {against}, {label}": [
            (index, hits - ref[1]) for (index, hits), ref in zip(sets_, correct[against][label])
        ]
        for against in (REFERENCE, BASELINE)
        if against in correct
        for method in names
        if method != against and not (against == BASELINE and method == REFERENCE)
        for label, sets_ in correct[method].items()
    }
    claims |= {  # what sampling adds to the weights it centres on, per method
        f"{name.removesuffix('-mu')} minus {name}, {label}": [
            (index, hits - mu[1])
            for (index, hits), mu in zip(correct[name.removesuffix("-mu")][label], sets_)
        ]
        for name in names
        if name.endswith("-mu")
        for label, sets_ in correct[name].items()
    }
    if REFERENCE in argmax:  # a share, not a difference: its verdict only says it is > 0
        everything = torch.arange(len(data.test))
        claims |= {
            f"{method} agreement with {REFERENCE} (share of clean test argmax)": [
                (everything, (argmax[method] == argmax[REFERENCE]).double())
            ]
            for method in argmax
            if method != REFERENCE
        }
    frame = intervals.claim_rows(claims, len(data.test))
    return {"scores": pd.DataFrame(rows), "claims": frame, "attacks": pd.DataFrame(attacks)}


def white_box(rule: harness.Rule, args, data, budget, profile, seed: int) -> tuple[list, dict]:
    """``rule``'s white-box worst case at every eps of both norms: each attack's row, and
    label -> [(index (n,), (n,) fraction of fresh draws still correct)]."""
    x, y = data.test.x[: args.n], data.test.y[: args.n]
    _, min_norm = harness.min_norm_rows(rule, data, args.n, args.eps, budget, profile,
                                        Path(args.root), args.device, tqdm.write)  # fmt: skip
    used = budget.of(rule)
    budgets = harness.settings(rule, used, seed), harness.apgd_settings(rule, used, seed)
    found, correct = [], {}
    for norm, grid in (("L2", args.eps), ("Linf", [e * X_MAX for e in args.linf])):
        for eps in grid:
            members, worst, _ = harness.ensemble_point(rule, x, y, eps, norm, budgets,
                                                       min_norm.get(eps), Path(args.root),
                                                       check=False)  # fmt: skip
            size = eps if norm == "L2" else eps / X_MAX
            found += [{"norm": norm, "eps": size, "attack": m["attack"], "acc": m["acc"]}
                      for m in members]  # fmt: skip
            correct[f"white-box {norm} eps {size:g}"] = [(torch.arange(args.n), worst)]
    return found, correct


@torch.no_grad()
def decide(rule: harness.Rule, x: torch.Tensor) -> torch.Tensor:
    """The rule's decision probabilities (N, C): its posterior predictive, or its output."""
    if rule.draw is not None:
        return rule.draw(x, 1)[0]
    out = rule.fn(x)
    out = out[0] if out.dim() == 3 else out  # (1, N, C) of the ensemble
    return out.softmax(-1) if rule.output == "logits" else out


def _correct(rule, x, y) -> torch.Tensor:
    """(N,) whether the rule's decision is right, as float64."""
    return (decide(rule, x).argmax(-1) == y).double().cpu()


def masked(rule: harness.Rule, lit: torch.Tensor) -> harness.Rule:
    """``rule`` on inputs whose pixels no training image lights are set to 0: what a rule
    that ignores those pixels decides (lit: (D,) bool)."""
    keep = lit.to(torch.float32)  # (D,)

    def wrap(fn):
        return None if fn is None else (lambda x, *rest: fn(x * keep.to(x), *rest))

    return replace(rule, name=f"{rule.name}_masked", fn=wrap(rule.fn), draw=wrap(rule.draw),
                   mean=wrap(rule.mean), fingerprint={"rule": rule.fingerprint,
                                                      "mask": "unlit pixels"})  # fmt: skip


def transfer_sets(args, profile, data, seed: int) -> list:
    """The rigorous attack sets of the profile's 12 source nets of ``seed``."""
    root = Path(args.sets_root) / profile.name
    sources = train_sources(data, train=replace(PLAIN, max_epochs=profile.source_epochs),
                            root=root, seed=seed, device=args.device, progress=False)  # fmt: skip
    zoo = tables.Zoo(seed, bnns={}, plains={}, sources=sources, pool=[])  # the sources alone
    return pipeline.build_attack_sets(
        "rigorous", profile, zoo, data, root, False, SeedResult(), args.device
    )


def build(method: str, args, data, seed: int) -> tuple[harness.Rule, dict]:
    """``method`` trained (or loaded, or its chains run) as the rule it decides by, and what
    describes it: training seconds and, for a posterior, the median sd of its weight draws."""
    common = {"root": Path(args.root), "device": args.device, "progress": not args.no_progress}
    if method in PLAIN_METHODS:
        return plain_rule(method, args, data, seed, common)
    if method == "map":
        return map_rule(args, data)
    if method in HMC_PRIOR:
        weights, divergences, wall = exact_posterior.chains(args, data, HMC_PRIOR[method])
        bnn = exact_posterior.model(HMC_PRIOR[method])
        guide = PosteriorSamples({"weights": weights.reshape(-1, weights.shape[-1])})  # (C S, P)
        info = {"train_s": wall, "divergences": divergences}
        fingerprint = {"chains": args.chains, "samples": args.samples, "seed": args.seed}
    elif method == "mc-dropout":  # the trained net's dropout as a guide over its weights
        net, meta = dropout_net(args, data, seed)
        bnn = BayesianMLP(args.arch)
        guide = MCDropout(bnn, bnn.flatten(dict(net[1].named_parameters())), args.dropout)
        info = {"train_s": meta["wall_time_s"]}
        fingerprint = {"net": pipeline.fingerprint(meta), "draws": "masks shared by the batch"}
    elif method == "csghmc":
        bnn, guide, meta = csghmc(args, data, seed, common)
        info, fingerprint = {"train_s": meta["wall_time_s"]}, meta
    else:
        prior, guide_name, optimizer = VI[method]
        train = replace(BNN, max_epochs=args.epochs, optimizer=optimizer)
        ((bnn, guide, meta),) = train_bnns([RHO_INIT], data, arch=args.arch, prior=prior,
                                           guide=guide_name, train=train, kind=KIND, seed=seed,
                                           log=tqdm.write, **common)  # fmt: skip
        info, fingerprint = {"train_s": meta["wall_time_s"]}, pipeline.fingerprint(meta)
    bnn, guide = bnn.to(args.device).requires_grad_(False), guide.to(args.device)
    name = f"{args.arch}_{method}_seed{seed}"
    rule = harness.stochastic(name, method, args.draws, bnn, guide, args.draws, fingerprint)
    pyro.set_rng_seed(seed)
    draws = sample_weights(bnn, guide, SD_DRAWS)  # (S, P)
    sd = draws.std(0)  # (P,) over the draws
    if method != "mc-dropout":  # a posterior under a prior: 1 at the exact one
        # a center fixed apart from the draws (the identity needs it): FC-10's MAP, else 0
        center = posterior_mode(args, data)[0] if args.arch == ARCHS[0] else None
        read = configurational_temperature(bnn, data, draws, center=center, device=args.device)
        info["temperature"] = float(read.mean())
    # the flat weights begin with the first layer's (H, 784) matrix, row by row
    width = bnn.shapes["layers.0.weight"][0]
    unlit = (~data.train.lit()).expand(width, -1).reshape(-1).cpu()  # (H 784,)
    pixels = sd[: len(unlit)].cpu()
    first = bnn.unflatten(posterior_mean(bnn, guide))["layers.0.weight"]  # (H, 784)
    return rule, info | {
        "weight_sd_median": float(sd.median()),
        "weight_sd_median_lit": float(pixels[~unlit].median()),
        "weight_sd_median_unlit": float(pixels[unlit].median()) if unlit.any() else None,
        "mean_weight_norm_lit": lit_norm(first, data),
    }


def lit_norm(first: torch.Tensor, data) -> float:
    """The norm of a first layer's weights (H, 784) on the pixels some training image
    lights: how hard a net presses on the inputs an attack can move to any effect."""
    return float(first[:, data.train.lit().to(first.device)].norm())


def plain_rule(method: str, args, data, seed: int, common: dict) -> tuple[harness.Rule, dict]:
    """The plain net (by the paper's SGD, or by Adam), or the ensemble of --pool of them,
    trained for --epochs."""
    seeds = [pool_seed(seed, k) for k in range(args.pool)] if method == "ensemble" else [seed]
    train = matched(args.epochs)
    train = replace(train, optimizer="adam") if method == "plain-adam" else train
    trained = [
        train_baseline(args.arch, 0.0, data, train=train, kind=KIND, seed=s, log=tqdm.write,
                       **common)
        for s in seeds
    ]  # fmt: skip
    nets = [net.eval().requires_grad_(False) for net, _ in trained]
    prints = [pipeline.fingerprint(meta) for _, meta in trained]
    info = {"train_s": sum(meta["wall_time_s"] for _, meta in trained)}
    if method != "ensemble":
        info["mean_weight_norm_lit"] = lit_norm(nets[0].layers[0].weight, data)
        return harness.Rule(f"{args.arch}_{method}_seed{seed}", method, 1, nets[0], "logits", 0,
                            prints[0]), info  # fmt: skip
    fn = tables.pool_fn(nets, len(nets))  # (1, B, C) probs
    return harness.Rule(f"{args.arch}_pool{len(nets)}_seed{seed}", method, len(nets), fn,
                        "probs", 0, prints), info  # fmt: skip


def posterior_mode(args, data) -> tuple[torch.Tensor, dict]:
    """The exact posterior's mode under N(0, 1), by L-BFGS on every training image
    (pyro_bnn.mcmc.map_estimate), an artifact: (P,) on --device, and its meta."""
    bnn = exact_posterior.model("normal").to(args.device).requires_grad_(False)
    config = {"arch": args.arch, "prior": "normal", "method": "map", "n_train": len(data.train)}

    def fit() -> tuple[dict, dict]:
        start = time.perf_counter()
        mode = map_estimate(bnn, data, device=args.device)
        return {"weights": mode.cpu()}, {"wall_time_s": time.perf_counter() - start}

    path = artifact_path(Path(args.root), KIND, f"{args.arch}_map", config)
    tensors, meta = cached(path, config, fit, log=tqdm.write)
    return tensors["weights"].to(args.device), meta


def map_rule(args, data) -> tuple[harness.Rule, dict]:
    """The exact posterior's mode under N(0, 1) (:func:`posterior_mode`): the point estimate
    hmc averages around, trained to convergence; no training seed moves it."""
    bnn = exact_posterior.model("normal").to(args.device).requires_grad_(False)
    mode, meta = posterior_mode(args, data)  # (P,)
    config = {"arch": args.arch, "prior": "normal", "method": "map", "n_train": len(data.train)}
    rule = harness.Rule(f"{args.arch}_map", "map", 0, functools.partial(bnn.apply, weights=mode),
                        "logits", 0, config)  # fmt: skip
    first = bnn.unflatten(mode)["layers.0.weight"]  # (10, 784)
    return rule, {"train_s": meta["wall_time_s"], "mean_weight_norm_lit": lit_norm(first, data)}


def csghmc(args, data, seed: int, common: dict) -> tuple[BayesianMLP, PosteriorSamples, dict]:
    """cSGHMC under N(0, 1): --cycles cycles over --epochs epochs; (model, draws, meta)."""
    bnn = BayesianMLP(args.arch, prior=make_prior("normal"))
    per_cycle = max(1, args.epochs // args.cycles)
    config = {
        "arch": args.arch,
        "prior": "normal",
        "method": "csghmc",
        "seed": seed,
        "cycles": args.cycles,
        "epochs_per_cycle": per_cycle,
        "sample_fraction": SAMPLE_FRACTION,
        "n_train": len(data.train),
    }
    tuned = {"lr": args.csghmc_lr, "noise_fraction": args.csghmc_noise}
    tuned = {k: v for k, v in tuned.items() if v is not None}  # absent: fit_csghmc's defaults
    config |= tuned
    at_mode = (args.csghmc_scale, args.csghmc_start) != ("none", "prior")
    if at_mode:  # the default keeps the artifacts of runs made before these options
        config |= {"scale": args.csghmc_scale, "start": args.csghmc_start}

    def fit() -> tuple[dict, dict]:
        extra = {}
        if at_mode:
            mode, _ = posterior_mode(args, data)  # (P,)
            if args.csghmc_scale == "fisher":
                extra["scale"] = fisher_scale(bnn, data, mode, device=args.device)
            if args.csghmc_start == "map":
                extra["init"] = mode
        _, result = fit_csghmc(
            bnn,
            data,
            num_cycles=args.cycles,
            epochs_per_cycle=per_cycle,
            sample_fraction=SAMPLE_FRACTION,
            **tuned,
            **extra,
            seed=seed,
            device=args.device,
            progress=common["progress"],
        )
        tensors = {"weights": result.samples["weights"].cpu()}  # (draws, P)
        return tensors, {"wall_time_s": result.wall_time_s, "draws": len(result.cycle)}

    path = artifact_path(common["root"], KIND, f"{args.arch}_csghmc_seed{seed}", config)
    tensors, meta = cached(path, config, fit, log=tqdm.write)
    return bnn, PosteriorSamples(tensors), meta


def dropout_net(args, data, seed: int) -> tuple[nn.Module, dict]:
    """The plain --arch net with dropout on its input and after every hidden ReLU, trained as
    the plain nets are for --epochs."""
    train = matched(args.epochs)
    config = {"arch": args.arch, "dropout": args.dropout, "seed": seed, "n_train": len(data.train),
              **train.settings()}  # fmt: skip
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Dropout(args.dropout), MLP(args.arch, dropout=args.dropout))
    path = artifact_path(Path(args.root), KIND, f"{args.arch}_dropout{args.dropout:g}_seed{seed}",
                         config)  # fmt: skip

    def fit() -> tuple[dict, dict]:
        result = fit_torch(net, data, lam=0.0, seed=seed, device=args.device,
                           progress=not args.no_progress, **train.fit_kwargs())  # fmt: skip
        return {k: v.cpu() for k, v in net.state_dict().items()}, result.summary()

    tensors, meta = cached(path, config, fit, log=tqdm.write)
    net.load_state_dict(tensors)
    return net.to(args.device).eval().requires_grad_(False), meta


def plot(scores: pd.DataFrame, methods: list[str], path: Path) -> None:
    """Robust accuracy per method against the budget: L2 white-box, L-inf white-box and
    transfer, mean over seeds; and, per method with one (mean) net, white-box accuracy at
    the L2 eps where the methods differ most against the norm of that net's first layer
    on the lit pixels."""
    mean = scores.groupby(["method", "metric"], sort=False)["value"].mean()
    panels = [("white-box L2 eps ", "L2 eps (/126)"), ("white-box Linf eps ", "L-inf eps ([0, 1])"),
              ("transfer x", "multiple of r")]  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    for ax, (prefix, xlabel) in zip(axes, panels):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # up to 20 rules told apart
        for method in methods:
            points = mean[method][mean[method].index.str.startswith(prefix)]
            sizes = [float(k.removeprefix(prefix)) for k in points.index]
            ax.plot(sizes, points.values, marker="o", label=method,
                    linestyle="--" if method in HMC_PRIOR else "-")  # fmt: skip
        ax.set(xlabel=xlabel, title=prefix.strip(), ylabel="accuracy (%)", ylim=(-2, 102))
    axes[2].legend(fontsize=7)
    l2 = {k for k in mean.index.get_level_values("metric") if k.startswith(panels[0][0])}
    at = max(sorted(l2), key=lambda k: mean.xs(k, level="metric").std())  # methods differ most
    axes[3].set_prop_cycle(color=plt.cm.tab20.colors)
    for method in methods:
        if (method, "mean_weight_norm_lit") in mean.index:
            x, y = mean[method, "mean_weight_norm_lit"], mean[method, at]
            axes[3].scatter(x, y)
            axes[3].annotate(method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[3].set(xlabel="norm of the (mean) first layer on lit pixels", ylabel="accuracy (%)",
                title=at.removeprefix("white-box "))  # fmt: skip
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)
