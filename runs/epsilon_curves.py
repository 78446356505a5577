"""White-box robust accuracy against the budget eps, in L2 and in L-inf: every
FC-100-100-10 model of each seed, each attacked as the decision rule it uses, scored as the
per-example worst case over an ensemble of attacks, and the headline claims as paired
differences with intervals over seeds and images (runs.study.intervals).

    python runs/epsilon_curves.py --profile full --seeds 0 1 2     # first 1000 test images
    python runs/epsilon_curves.py --profile full --n 300 --eps 0.5 1 1.5 2 3 --seeds 1
    python runs/epsilon_curves.py --profile full --device cuda
    python runs/epsilon_curves.py --quick                          # smoke run, temp dirs

The rules: the single-sample BNN of every rho_init (one fresh weight draw per call); the
mean-probability ensembles of N = 10 and 100 samples of Table 3's BNN; Table 4's BNN pruned
by 75% (both SNR rankings), as a 100-sample ensemble; the controls that isolate weight
sampling (the posterior mean of each control rho_init's BNN, and its fixed-sigma and
noise-only twins, runs.study.zoo.CONTROLS); the four plain nets, and the four trained as the
BNNs are; the plain-net ensemble control (the pool's mean probabilities); and the reference
defence, the lambda 0 net adversarially trained on L2 PGD examples (ADVERSARY; Madry et al.
2018), trained here on first use.

The ensemble, at every eps, on the first --n test images, each judged on fresh draws:
- L2 (--eps, /126 scale): PGD (pyro_bnn.attacks.pgd_attack, margin loss, step 2.5 eps /
  steps); APGD-CE and APGD-DLR (pyro_bnn.attacks.apgd, torchattacks' step schedule), and
  APGD-T on the deterministic rules; the minimum-norm attack of runs/study/attack_sets.py
  (EOT for the stochastic rules, DDN for the others; the profile's white-box steps), read
  at eps: an example is robust when its r is longer than eps or the attack failed;
  transfer: PGD on a stochastic rule's mean-weights net, judged on the rule;
- L-inf (--linf, on [0, 1] pixels): PGD (sign steps), APGD-CE, APGD-DLR, and APGD-T on the
  deterministic rules.
The committed figure ('worst') is, per example, the lowest fraction of fresh draws still
correct over the ensemble. A stochastic rule's step averages the gradients of at least
--eot weight samples and its verdict counts at least --passes: ceil(eot / N) and
ceil(passes / N) calls of an N-sample rule. A deterministic rule gets one call of each.

The convergence sweep, on the first seed of --seeds (unless --no-convergence) and the first
--check-n test images: every model at every eps of both norms (--sweep-eps, --sweep-linf
narrow it), under PGD and APGD-CE (two step rules, so that a flat curve is not one step
rule's fixed path), one setting at a time: steps, EOT samples (stochastic rules) and
restarts (GRIDS), the others at the budget. A curve is flat when no setting above the
budget lowers accuracy by more than FLAT points (epsilon_flatness_seed<S>_n<check-n>.csv;
sweeps on different --check-n keep apart, so cheap rules can be swept on more images than
costly ones). Checks:
the doubled budget of the strongest attack, and the gradient-masking checks of Carlini et
al. (2019) (:func:`masking_checks`). A model with a white-box set in the study's tables (the
single-sample BNNs and the plain nets, on the first eot_examples images) reuses it, read
on its first --n images.

Every (model, eps, settings) result is an artifact under --root/<profile>/epsilon-pgd/ and
epsilon-apgd/, so a killed run resumes, and a run over several seeds reuses the
single-seed runs. Each seed's curves, claim values and transfer rows are also kept under
--results/epsilon/seeds/<seed>/, and a later run with the same settings combines its seeds
with them (--only-these-seeds opts out), so seeds run in different sittings add up.

Writes, to --results (default runs/results/rigorous/; another profile's go to
runs/results-<profile>/rigorous/):
- per seed, epsilon_curves_seed<S>.csv/.md/.png, epsilon_check_seed<S>.csv,
  epsilon_masking_seed<S>.csv and (with the sweep) epsilon_convergence_seed<S>_n<check-n>.csv
  and epsilon_flatness_seed<S>_n<check-n>.csv;
- over the seeds run and saved, epsilon_curves.csv/.md/.png (mean and sd), epsilon_intervals.csv:
  the claims of :func:`claims` at every eps of both norms, with intervals over seeds and
  images, and transfer_adv.csv: the reference defence on the rigorous attack sets of the
  source nets at every multiplier, as the study scores its models.
Accuracies are in percent; eps_126 is the budget on the /126 pixel scale, eps_255 on
[0, 1] pixels (pixels / 255); norm says which.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from pyro_bnn.artifacts import atomic_write, cached  # noqa: E402
from pyro_bnn.attacks import ModelFn, PGDAdversary, SampleFn, eot_model, pgd_attack  # noqa: E402
from pyro_bnn.attacks.apgd import apgd_attack  # noqa: E402
from pyro_bnn.data import X_MAX  # noqa: E402
from pyro_bnn.evaluate import accuracy, as_probs, run_probs  # noqa: E402
from pyro_bnn.predict import posterior_mean, sampler  # noqa: E402
from pyro_bnn.pruning import SCOPES, prune  # noqa: E402
from runs.study import intervals, paper, pipeline, tables  # noqa: E402
from runs.study.args import (  # noqa: E402
    Parser,
    add_attack_targets,
    device,
    exit_timed,
    positive_float,
    positive_int,
    started,
)
from runs.study.attack_sets import attack_set  # noqa: E402
from runs.study.config import PLAIN  # noqa: E402
from runs.study.machine import describe  # noqa: E402
from runs.study.naming import artifact_path, baseline_name, bnn_name, without_seed  # noqa: E402
from runs.study.pipeline import SeedResult, load_zoo  # noqa: E402
from runs.study.plots import save_png  # noqa: E402
from runs.study.profiles import PROFILES, get_profile  # noqa: E402
from runs.study.results import other_seeds, save_seed  # noqa: E402
from runs.study.training import job_label, load_data, run_job, training_jobs  # noqa: E402
from runs.study.zoo import train_baseline  # noqa: E402

HERE = Path(__file__).resolve().parent
EPS_GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)  # L2 budgets, /126 scale
CONVERGENCE_EPS = 1.5  # mid-grid budget, the quick run's convergence check
GRIDS = {"steps": (10, 25, 50, 100, 200, 500), "eot": (1, 3, 10, 30, 100), "restarts": (1, 3, 10)}
FAMILIES = ("pgd", "apgd-ce")  # two step rules: PGD's fixed 2.5 eps / steps, APGD's adaptive
CHECK_N = 1000  # test images of the convergence sweep
FLAT = 1.0  # points: a curve is flat when no larger setting lowers it by more than this
ENSEMBLES = (10, 100)  # Table 3's N attacked
PRUNE_RATE = 0.75  # Table 4's rate of the third headline claim
ADVERSARY = PGDAdversary(eps=2.0, steps=10)  # the reference defence's training attack
QUICK_EPS = (CONVERGENCE_EPS, 3.0)
LINF_GRID = (0.05, 0.1, 0.15, 0.2, 0.3)  # L-inf budgets on [0, 1] pixels (the literature's)
QUICK_LINF = (0.3,)
QUICK_N = 10  # test images of --quick
QUICK_RULES = {  # --quick attacks one rule of each kind, and what every claim needs
    ("bnn", -3.0), ("bnn", -2.0), ("bnn-mean10", -3.0), ("bnn-mean100", -3.0),
    ("bnn-pruned75-global", -2.0), ("fixed-sigma", -3.0), ("noise-only", -3.0),
    ("bnn-mu", -3.0), ("plain", 0.0), ("plain", 1.0), ("plain-matched", 0.0),
    ("plain-matched", 1.0), ("plain-ensemble", 2), ("plain-adv", 2.0),
}  # fmt: skip
APGD = ("ce", "dlr")  # APGD's losses on every rule; a deterministic rule adds APGD-T
WORST = "worst"  # the per-example worst case over the ensemble, the committed figure
TRANSFER = "transfer-mean"  # PGD on a stochastic rule's mean-weights net, judged on the rule
QUICK_GRIDS = {"steps": (2, 5), "eot": (1, 2), "restarts": (1, 2)}
QUICK_CHECKED = {("bnn", -3.0), ("plain", 0.0)}  # --quick sweeps these two models alone


@dataclass(frozen=True)
class Budget:
    """PGD's budget per eps: the weight samples a stochastic rule's step averages (eot) and
    its verdict counts (passes), steps, and random restarts; a deterministic rule, whose
    attacks draw no weights and so cost little, takes det_restarts."""

    eot: int
    passes: int
    steps: int = 50
    restarts: int = 1
    det_restarts: int = max(GRIDS["restarts"])

    def of(self, rule: Rule) -> Budget:
        """The budget ``rule`` is attacked with: det_restarts restarts if deterministic."""
        return self if rule.samples else replace(self, restarts=self.det_restarts)


@dataclass
class Rule:
    """One model as the decision rule it uses.

    name: artifact name; kind: 'bnn', 'bnn-mean<N>', 'bnn-pruned<rate>-<scope>', 'bnn-mu'
    (the posterior mean), a training control of runs.study.zoo.CONTROLS, 'plain',
    'plain-matched', 'plain-ensemble' or 'plain-adv'; param: rho_init, lambda, the pool's
    size, or the adversarial training's eps; samples: weight samples per call (0:
    deterministic); draw: (x, k) -> (k, B, C) for a stochastic rule,
    else None; fn: x (B, 784) -> (B, C) or (1, B, C), differentiable in x; mean: a
    stochastic rule's net at its guide's mean weights, x -> (B, C) logits, the source of
    its transfer attack (None for a deterministic rule).
    """

    name: str
    kind: str
    param: float
    fn: ModelFn
    output: str
    samples: int
    fingerprint: object
    draw: SampleFn | None = None
    mean: ModelFn | None = None

    @property
    def model(self) -> str:
        return f"{self.kind} {self.param:g}"

    @property
    def key(self) -> tuple:
        return self.kind, self.param

    def calls(self, samples: int) -> int:
        """Calls of fn that draw at least ``samples`` weight samples (1 if deterministic)."""
        return 1 if self.samples == 0 else math.ceil(samples / self.samples)


def to_255(eps):
    """A /126-scale length on [0, 1] pixels: the box [0, X_MAX] maps to [0, 1]."""
    return eps / X_MAX


def stochastic(name, kind, param, bnn, guide, size, fingerprint) -> Rule:
    """A rule of ``size`` weight samples: its fixed-budget attacks see the log of its mean
    probability (by logsumexp, so no gradient underflows); its minimum-norm attack draws
    probabilities."""
    fn = eot_model(sampler(bnn, guide, size, log=True), 1)
    mean = functools.partial(bnn.apply, weights=posterior_mean(bnn, guide))  # (B, C) logits
    draw = sampler(bnn, guide, size)
    return Rule(name, kind, param, fn, "logits", size, fingerprint, draw, mean)


def adversarial_net(profile, data, root: Path, seed: int, device, progress: bool):
    """The reference defence: the lambda 0 net trained on ADVERSARY's examples, with the
    plain nets' settings, trained on first use: (net, meta)."""
    net, meta = train_baseline(
        paper.TABLE1_ARCH, 0.0, data, train=replace(PLAIN, max_epochs=profile.plain_epochs),
        root=root, kind="adv", seed=seed, device=device, progress=progress, log=tqdm.write,
        adversary=ADVERSARY,
    )  # fmt: skip
    return net.eval().requires_grad_(False), meta


def rules(zoo: tables.Zoo, prints: dict, adv=None) -> list[Rule]:
    """Every FC-100-100-10 model of the seed as the rule it uses; adv: the reference
    defence's (net, meta), if any."""
    arch, seed = paper.TABLE1_ARCH, zoo.seed
    out = [
        stochastic(bnn_name(arch, rho, seed), "bnn", rho, bnn, guide, 1, prints[f"bnn{rho:g}"])
        for rho, (bnn, guide) in zoo.bnns.items()
    ]
    rho = paper.TABLE3_RHO_INIT
    for size in ENSEMBLES:
        name = bnn_name(arch, rho, seed) + f"_ens{size}"
        out.append(
            stochastic(name, f"bnn-mean{size}", rho, *zoo.bnns[rho], size, prints[f"bnn{rho:g}"])
        )
    rho, size = paper.TABLE4_RHO_INIT, paper.TABLE4_ENSEMBLE
    bnn, guide = zoo.bnns[rho]
    for scope in SCOPES:
        pruned = prune(bnn, guide, PRUNE_RATE, scope).requires_grad_(False)
        kind = f"bnn-pruned{100 * PRUNE_RATE:g}-{scope}"
        name = bnn_name(arch, rho, seed) + f"_{kind.removeprefix('bnn-')}_ens{size}"
        fingerprint = {"bnn": prints[f"bnn{rho:g}"], "rate": PRUNE_RATE, "scope": scope}
        out.append(stochastic(name, kind, rho, bnn, pruned, size, fingerprint))
    for lam, net in zoo.plains.items():
        name = baseline_name(arch, lam, seed)
        out.append(Rule(name, "plain", lam, net, "logits", 0, prints[f"plain{lam:g}"]))
    pool = [prints[f"pool{k}"] for k in range(len(zoo.pool))]
    name = baseline_name(arch, 0.0, seed) + f"_pool{len(pool)}"
    fn = tables.pool_fn(zoo.pool, len(pool))  # (1, B, C)
    out.append(Rule(name, "plain-ensemble", len(pool), fn, "probs", 0, pool))
    for (control, rho), (bnn, guide) in zoo.controls.items():
        name = bnn_name(arch, rho, seed) + f"_{control}"
        fingerprint = prints[f"{control}{rho:g}"]
        out.append(stochastic(name, control, rho, bnn, guide, 1, fingerprint))
    for rho in sorted({rho for _, rho in zoo.controls}):  # the posterior mean, as a net
        bnn, guide = zoo.bnns[rho]
        mu = posterior_mean(bnn, guide)  # (P,)
        name = bnn_name(arch, rho, seed) + "_mu"
        fingerprint = {"bnn": prints[f"bnn{rho:g}"], "weights": "posterior mean"}
        fn = functools.partial(bnn.apply, weights=mu)  # x -> (B, C) logits
        out.append(Rule(name, "bnn-mu", rho, fn, "logits", 0, fingerprint))
    for lam, net in zoo.matched.items():
        name = baseline_name(arch, lam, seed) + "_matched"
        out.append(Rule(name, "plain-matched", lam, net, "logits", 0, prints[f"matched{lam:g}"]))
    if adv is not None:
        name = baseline_name(arch, 0.0, seed) + "_adv"
        net, meta = adv
        out.append(
            Rule(name, "plain-adv", ADVERSARY.eps, net, "logits", 0, pipeline.fingerprint(meta))
        )
    return out


def settings(rule: Rule, budget: Budget, seed: int) -> dict:
    """pgd_attack's settings for ``rule`` under ``budget``."""
    calls = {"eot": rule.calls(budget.eot), "passes": rule.calls(budget.passes)}
    return {
        "steps": budget.steps,
        "restarts": budget.restarts,
        **calls,
        "loss": "margin",
        "output": rule.output,
        "seed": seed,
    }


def row(
    rule: Rule, eps: float, attack: str, acc: float, n: int, norm: str = "L2", **attack_settings
) -> dict:
    """One point of a curve, as a CSV row."""
    return {
        "model": rule.model,
        "kind": rule.kind,
        "param": rule.param,
        "norm": norm,
        "eps_126": eps,
        "eps_255": to_255(eps),
        "attack": attack,
        "acc": acc,
        "n": n,
        "samples_per_call": rule.samples,
        **attack_settings,
    }


@torch.no_grad()
def clean_accuracy(rule: Rule, x: torch.Tensor, y: torch.Tensor, passes: int, seed: int) -> float:
    """Accuracy (%) on clean x over the calls that draw ``passes`` weight samples."""
    pyro.set_rng_seed(seed)
    out = run_probs(rule.fn, x, rule.calls(passes))  # (calls, B, C), logits or probs
    return 100 * float(accuracy(out, y).mean())


def pgd_accuracy(
    rule: Rule, x, y, eps: float, attack: dict, root: Path, log=None, with_r: bool = False
) -> tuple:
    """Robust accuracy (%) under pgd_attack at ``eps``, and per example the fraction of
    fresh draws still correct (n,), and with ``with_r`` the perturbations (n, D); cached
    under <root>/epsilon-pgd/.

    :param attack: pgd_attack's settings, from :func:`settings`.
    """
    config = {"model": rule.name, "fingerprint": rule.fingerprint, "split": "test"}
    config |= {"n": len(x), "eps": eps, "attack": attack}

    def compute() -> tuple[dict, dict]:
        pyro.set_rng_seed(attack["seed"])  # the weight draws, as the random starts
        result = pgd_attack(rule.fn, x, y, eps, progress=False, **attack)
        tensors = {"robust": result.robust, "norm": result.r.norm(dim=1), "r": result.r}
        return tensors, {"acc": 100 * result.accuracy()}

    path = artifact_path(root, "epsilon-pgd", f"{rule.name}_eps{eps:g}", config)
    tensors, meta = cached(path, config, compute, log=log)
    if with_r:
        return meta["acc"], tensors["robust"], tensors["r"]
    return meta["acc"], tensors["robust"]


def apgd_settings(rule: Rule, budget: Budget, seed: int) -> dict:
    """apgd_attack's budget for ``rule``: PGD's steps, restarts, EOT calls and passes."""
    return {"steps": budget.steps, "restarts": budget.restarts, "eot": rule.calls(budget.eot),
            "passes": rule.calls(budget.passes), "output": rule.output, "seed": seed}  # fmt: skip


def apgd_losses(rule: Rule) -> tuple[str, ...]:
    """APGD's losses for ``rule``: APGD-T's nine targets only where a call is cheap."""
    return APGD if rule.draw is not None else (*APGD, "dlr-targeted")


def apgd_accuracy(
    rule: Rule, x, y, eps: float, norm: str, loss: str, attack: dict, root: Path, log=None
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Robust accuracy (%) under APGD (pyro_bnn.attacks.apgd) at ``eps`` in ``norm``, per
    example the fraction of fresh draws still correct (n,), and the perturbations (n, D);
    cached under <root>/epsilon-apgd/."""
    config = {"model": rule.name, "fingerprint": rule.fingerprint, "split": "test"}
    config |= {"n": len(x), "eps": eps, "norm": norm, "loss": loss, "attack": attack}

    def compute() -> tuple[dict, dict]:
        pyro.set_rng_seed(attack["seed"])
        result = apgd_attack(rule.fn, x, y, eps, norm=norm, loss=loss, **attack)
        return {"robust": result.robust, "r": result.r}, {"acc": 100 * result.accuracy()}

    name = f"{rule.name}_{norm}_{loss}_eps{eps:g}"
    tensors, meta = cached(artifact_path(root, "epsilon-apgd", name, config), config, compute,
                           log=log)  # fmt: skip
    return meta["acc"], tensors["robust"], tensors["r"]


def min_norm_rows(rule: Rule, data, n, eps_list, budget, profile, root, device, log) -> tuple:
    """The minimum-norm attack of ``rule`` (an attack set: EOT for a stochastic rule, DDN
    otherwise) read as robust accuracy (%) at each eps on the first n test images: failed,
    or r longer than eps. The study's white-box sets (runs.study.pipeline.whitebox_sets) are
    reused: for those models the set covers max(n, eot_examples) images. Returns the rows and
    eps -> ((n,) robust per example, 0 or 1; (n, D) r where it is within eps, else 0), and
    at eps = inf the (n,) examples the attack failed on."""
    if rule.draw is None:
        used = {"steps": profile.attack_steps, "eot": 1, "passes": 1}
        fn, attack = rule.fn, {"protocol": "rigorous", "output": rule.output}
        attack["n_targets"] = profile.attack_targets
    else:
        used = {"steps": profile.eot_steps, "eot": rule.calls(budget.eot)}
        used["passes"] = rule.calls(budget.passes)
        fn, attack = rule.draw, {"protocol": "eot", "k": used["eot"], "passes": used["passes"]}
    limit = max(n, profile.eot_examples) if rule.kind in ("bnn", "plain") else n
    tensors, _ = attack_set(
        rule.name, fn, data, limit=limit, root=root, fingerprint=rule.fingerprint,
        device=device, progress=False, log=log, steps=used["steps"], **attack,
    )  # fmt: skip
    name = f"{attack['protocol'].replace('rigorous', 'ddn')}-min-norm"
    norms, success = tensors["r"][:n].norm(dim=1), tensors["success"][:n]  # (n,): test[:n]
    rows, per_eps = [], {math.inf: (~success).double()}  # unbounded: only failures survive
    for eps in eps_list:
        robust = ~success | (norms > eps)  # (n,)
        rows.append(row(rule, eps, name, 100 * float(robust.double().mean()), n, **used))
        r = tensors["r"][:n] * (~robust).to(tensors["r"].dtype)[:, None]  # (n, D)
        per_eps[eps] = (robust.double(), r)
    return rows, per_eps


def claims(robust: dict, norm: str = "L2") -> dict[str, list[tuple]]:
    """The headline claims under the white-box worst case, at each eps of ``norm``, as
    per-example paired differences on test[:n]: claim -> [(index (m,), diff (m,))]. An
    L-inf eps is named on [0, 1] pixels, an L2 one on the /126 scale.

    :param robust: (kind, param) -> {eps: (n,) fraction of fresh draws still correct}.
    The best BNN (single sample) and the best plain net are picked at each eps by their
    robust accuracy there on the images of even index; the claims that pick are scored on
    the odd ones (runs.study.intervals: no winner's curse), the others on all n.
    """
    n = len(next(iter(next(iter(robust.values())).values())))
    picks, scores = torch.arange(0, n, 2), torch.arange(1, n, 2)

    def best(kind: str, eps: float, params=None) -> torch.Tensor:
        return max(
            (v[eps] for (k, p), v in robust.items() if k == kind and p in (params or [p])),
            key=lambda t: float(t[picks].double().mean()),
        )

    def get(kind: str, param: float, eps: float) -> torch.Tensor:
        return robust[kind, param][eps]

    kinds = {kind for kind, _ in robust}
    mean, rho3, rho4 = f"bnn-mean{max(ENSEMBLES)}", paper.TABLE3_RHO_INIT, paper.TABLE4_RHO_INIT
    pruned = f"bnn-pruned{100 * PRUNE_RATE:g}-global"
    picked = {}  # claims that pick a best model, where the run attacked their models
    if {"bnn", "plain"} <= kinds:
        picked["best BNN minus best plain net"] = lambda e: best("bnn", e) - best("plain", e)
    if "plain" in kinds and (pruned, rho4) in robust:
        picked[f"{100 * PRUNE_RATE:g}%-pruned BNN (global) minus best plain net"] = lambda e: (
            get(pruned, rho4, e) - best("plain", e)
        )
    if {"bnn", "plain-adv"} <= kinds:
        picked["best BNN minus the adversarially trained net"] = lambda e: (
            best("bnn", e) - best("plain-adv", e)
        )
    if {"bnn", "plain-matched"} <= kinds:
        picked["best BNN minus best plain net trained as the BNNs"] = lambda e: (
            best("bnn", e) - best("plain-matched", e)
        )
    rhos = [param for kind, param in robust if kind == "bnn"]
    quiet = [rho for rho in rhos if intervals.noiseless(rho)]
    noisy = [rho for rho in rhos if rho not in quiet]
    if quiet and noisy:  # weight noise against the rest of BNN training
        still = min(quiet)
        name = f"best BNN with noise minus the deterministic BNN (rho_init {still:g})"
        picked[name] = lambda e: best("bnn", e, noisy) - get("bnn", still, e)
        if "best BNN minus best plain net trained as the BNNs" in picked:
            name = f"the deterministic BNN (rho_init {still:g}) minus best plain net trained as"
            picked[f"{name} the BNNs"] = lambda e: get("bnn", still, e) - best("plain-matched", e)
    fixed = {}  # claims on named models
    if (mean, rho3) in robust and ("bnn", rho3) in robust:
        fixed[f"{max(ENSEMBLES)}-sample ensemble minus one sample (Table 3's BNN)"] = lambda e: (
            get(mean, rho3, e) - get("bnn", rho3, e)
        )
    pools = [param for kind, param in robust if kind == "plain-ensemble"]
    if (mean, rho3) in robust and pools:
        fixed[f"{max(ENSEMBLES)}-sample ensemble minus the plain-net ensemble"] = lambda e: (
            get(mean, rho3, e) - get("plain-ensemble", pools[0], e)
        )
    for rho in sorted({param for kind, param in robust if kind == "fixed-sigma"}):
        for name, (a, b) in intervals.CONTROL_CLAIMS.items():
            param = {k: 0.0 if k == "plain-matched" else rho for k in (a, b)}
            if all((k, param[k]) in robust for k in (a, b)):
                fixed[f"{name} (rho_init {rho:g})"] = lambda e, a=a, b=b, p=param: (
                    get(a, p[a], e) - get(b, p[b], e)
                )
    eps_list = sorted(next(iter(robust.values())))
    out = {}
    for pairs, index in ((picked, scores), (fixed, torch.arange(n))):
        for name, diff in pairs.items():
            for eps in eps_list:
                size = eps if norm == "L2" else to_255(eps)
                out[f"{name}, at {norm} eps {size:g}"] = [(index, diff(eps)[index].double())]
    return out


def model_key(text: str) -> tuple[str, float]:
    """'kind:param' (e.g. 'bnn:-2', 'plain-matched:0') as a rule's key (kind, param)."""
    kind, _, param = text.rpartition(":")
    try:
        if kind:
            return kind, float(param)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected KIND:PARAM such as bnn:-2 or plain:0, got {text!r}")


def parse(argv: list[str] | None):
    """The command line, with --quick's settings filled in."""
    p = Parser(prog="runs/epsilon_curves.py", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="full", choices=list(PROFILES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="e.g. 0 1 2")
    p.add_argument("--root", default=None, help="artifact folder (default runs/artifacts)")
    p.add_argument("--results", default=None, help="default runs/results/rigorous")
    p.add_argument(
        "--n", type=positive_int, default=None, help="test images (default: eot_examples)"
    )
    p.add_argument(
        "--eps", type=positive_float, nargs="+", default=list(EPS_GRID), help="/126 scale"
    )
    p.add_argument(
        "--linf", type=positive_float, nargs="+", default=list(LINF_GRID), help="[0, 1] pixels"
    )
    p.add_argument(
        "--check-eps", type=positive_float, nargs="+", default=None,
        help="eps (L2 /126, or L-inf on [0, 1]) of the doubled-budget check (default: all)",
    )  # fmt: skip
    p.add_argument("--steps", type=positive_int, default=Budget.steps, help="PGD steps")
    p.add_argument("--restarts", type=positive_int, default=Budget.restarts)
    p.add_argument("--eot", type=positive_int, default=None, help="samples per step (eot_k)")
    p.add_argument("--passes", type=positive_int, default=None, help="per verdict (eot_passes)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda")
    p.add_argument("--no-convergence", action="store_true", help="skip the convergence sweep")
    p.add_argument("--check-n", type=positive_int, default=CHECK_N, help="test images of the sweep")
    p.add_argument(
        "--sweep-eps", type=positive_float, nargs="+", default=None,
        help="L2 eps (/126) of the convergence sweep (default: every --eps)",
    )  # fmt: skip
    p.add_argument(
        "--sweep-linf", type=positive_float, nargs="*", default=None,
        help="L-inf eps ([0, 1]) of the convergence sweep (default: every --linf)",
    )  # fmt: skip
    p.add_argument(
        "--models", type=model_key, nargs="+", default=None, metavar="KIND:PARAM",
        help="attack only these models, e.g. bnn:-3 plain:0 (default: every model); seeds "
        "combine only with seeds run on the same models",
    )  # fmt: skip
    p.add_argument(
        "--sweep-models", type=model_key, nargs="+", default=None, metavar="KIND:PARAM",
        help="models of the convergence sweep, e.g. bnn:-2 plain:0 (default: every model)",
    )  # fmt: skip
    p.add_argument(
        "--only-these-seeds", action="store_true",
        help="combine only the seeds run now, not those an earlier run with the same settings "
        "saved under <results>/epsilon/seeds/",
    )  # fmt: skip
    add_attack_targets(p)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quick", action="store_true", help="quick profile, tiny budgets, temp dirs")
    args = p.parse_args(argv)
    args.grids, args.only = GRIDS, args.models and set(args.models)
    args.checked = args.sweep_models and set(args.sweep_models)
    if args.quick:  # and, unless given, temporary folders
        temp = tempfile.mkdtemp(prefix="pyro_bnn_quick_")
        args.profile, args.n, args.eps, args.grids = "quick", QUICK_N, list(QUICK_EPS), QUICK_GRIDS
        args.linf, args.check_eps = list(QUICK_LINF), [CONVERGENCE_EPS]
        args.only = args.only or QUICK_RULES
        args.check_n, args.sweep_eps = QUICK_N, [CONVERGENCE_EPS]
        args.checked = args.checked or QUICK_CHECKED
        args.steps, args.restarts, args.eot, args.passes = 5, 1, 2, 4
        args.root, args.results = args.root or temp, args.results or temp
    return p, args


def main(argv: list[str] | None = None) -> int:
    p, args = parse(argv)
    profile = get_profile(args.profile, args.attack_targets)
    suffix = "" if profile.name == "full" else f"-{profile.name}"
    root = Path(args.root or HERE / "artifacts") / profile.name
    results = Path(args.results or HERE / f"results{suffix}" / "rigorous")
    eot, passes = args.eot or profile.eot_k, args.passes or profile.eot_passes
    det = max(args.restarts, *args.grids["restarts"])
    budget = Budget(eot, passes, args.steps, args.restarts, det)
    n = args.n or profile.eot_examples
    command = started(args, "runs/epsilon_curves.py", argv)
    data = load_data(profile)
    if n > len(data.test):
        p.error(f"argument --n: {n} exceeds the profile's {len(data.test)} test images")
    for seed in args.seeds:
        jobs = training_jobs(profile, seed, need_pool=True, device=args.device)
        missing = [job_label(j) for j in jobs if not run_job(j, data, root, False, True)]
        if missing and not args.quick:  # --quick trains them here, through load_zoo
            raise SystemExit(
                f"not trained under {root}: {'; '.join(missing)}. Run `python "
                f"runs/reproduce.py --profile {profile.name} --seeds {seed}` first"
            )
    data = data.to(args.device)
    setup = (
        f"on {args.device} ({describe(args.device)}); profile {profile.name}, the first {n} "
        f"test images. PGD: {budget.steps} steps, {budget.restarts} restart(s) "
        f"({budget.det_restarts} on a deterministic rule), margin loss, "
        f"step 2.5 eps / steps; a stochastic rule's step averages {budget.eot} weight samples "
        f"and its verdict counts {budget.passes} fresh ones (ceil(samples / N) calls of an "
        "N-sample ensemble)."
    )
    frames, values_per_seed, transfers = {}, {}, {}
    match = {
        "profile": profile.name,
        "n": n,
        "eps": sorted(set(args.eps)),
        "linf": sorted(set(args.linf)),
        "budget": asdict(budget),
        "attack_targets": profile.attack_targets,
        "only": args.only and sorted(args.only),
    }
    match = json.loads(json.dumps(match))  # as seed.json reads back
    for seed in args.seeds:
        check = not args.no_convergence and seed == args.seeds[0]
        curves, convergence, checks, masking, robust, transfer = seed_curves(
            args, seed, profile, data, root, budget, check
        )
        transfers[seed] = transfer.assign(seed=seed)
        markdown = report(curves, convergence, budget) + check_report(checks)
        markdown += masking_report(masking)
        markdown += f"\nMade by `{command}` {setup}\n"
        write_seed(results, seed, curves, convergence, markdown, n)
        if not convergence.empty:
            flat = flatness(convergence, budget)
            atomic_write(results / f"epsilon_flatness_seed{seed}_n{args.check_n}.csv",
                         lambda tmp, flat=flat: flat.to_csv(tmp, index=False))  # fmt: skip
        atomic_write(results / f"epsilon_check_seed{seed}.csv",
                     lambda tmp, checks=checks: checks.to_csv(tmp, index=False))  # fmt: skip
        atomic_write(results / f"epsilon_masking_seed{seed}.csv",
                     lambda tmp, masking=masking: masking.to_csv(tmp, index=False))  # fmt: skip
        frames[seed] = curves.assign(seed=seed)
        values = claims(robust["L2"], "L2") | claims(robust["Linf"], "Linf")
        values_per_seed[seed] = intervals.claim_rows(values, n)
        saved = {"curves": frames[seed], "values": values_per_seed[seed],
                 "transfer": transfers[seed]}  # fmt: skip
        save_seed(saved, results / "epsilon", seed, match | {"command": command})
    if not args.only_these_seeds:  # seeds an earlier run saved with the same settings
        for seed, (saved, _) in other_seeds(results / "epsilon", match, frames).items():
            frames[seed], values_per_seed[seed] = saved["curves"], saved["values"]
            transfers[seed] = saved["transfer"]
    seeds = sorted(frames)
    made_by = f"Made by `{command}` {setup}"
    combine(
        pd.concat([frames[s] for s in seeds]), [values_per_seed[s] for s in seeds],
        pd.concat([transfers[s] for s in seeds]), results, made_by, n,
    )  # fmt: skip
    return 0


def seed_curves(args, seed: int, profile, data, root: Path, budget: Budget, check: bool):
    """One seed's curves, (if check) convergence check and the doubled-budget check of
    :func:`ensemble_point` as DataFrames (CSV rows), its worst case per example, norm ->
    (kind, param) -> {eps: (n,)}, and the reference defence under transfer
    (runs.study.tables.transfer_sweep on the rigorous sets of the 12 source nets)."""
    n, eps_list = args.n or profile.eot_examples, sorted(set(args.eps))
    zoo, prints = load_zoo(profile, data, root, seed, True, SeedResult(), args.device)
    adv = adversarial_net(profile, data, root, seed, args.device, not args.no_progress)
    x, y = data.test.x[:n], data.test.y[:n]
    models = rules(zoo, prints, adv)
    for option, keys in (("--models", args.only), ("--sweep-models", args.checked)):
        unknown = set(keys or ()) - {r.key for r in models}
        if unknown:
            known = ", ".join(f"{r.kind}:{r.param:g}" for r in models)
            raise SystemExit(f"{option}: no model {sorted(unknown)}; the models: {known}")
        models = [r for r in models if option != "--models" or not keys or r.key in keys]
    sets = pipeline.build_attack_sets(
        "rigorous", profile, zoo, data, root, False, SeedResult(), args.device
    )  # the 12 source nets' sets, as the study's transfer tables use them
    transfer = tables.transfer_sweep({("plain-adv", ADVERSARY.eps): as_probs(adv[0])}, sets, data)
    linf = [eps * X_MAX for eps in sorted(set(args.linf))]  # on the /126 scale
    sweep = [("L2", e) for e in sorted(set(args.sweep_eps or eps_list))]
    sweep += [("Linf", e * X_MAX) for e in sorted(set(args.linf if args.sweep_linf is None
                                                       else args.sweep_linf))]  # fmt: skip
    points = [
        (rule, norm, eps, family, name, value)
        for rule in models
        if check and (args.checked is None or rule.key in args.checked)
        for norm, eps in sweep
        for family in FAMILIES
        for name, values in args.grids.items()
        if not (name == "eot" and rule.samples == 0)  # a deterministic rule ignores eot
        for value in values
    ]
    xc, yc = data.test.x[: args.check_n], data.test.y[: args.check_n]
    curves, convergence, checks, robust = [], [], [], {"L2": {}, "Linf": {}}
    unbounded = {}  # (kind, param) -> accuracy (%) under the unbounded minimum-norm attack
    checked_eps = {e if e in eps_list else e * X_MAX for e in args.check_eps or ()}
    total = len(models) * (len(eps_list) + len(linf) + 1) + len(points)
    desc = f"eps curves, seed {seed}"
    with tqdm(total=total, desc=desc, disable=args.no_progress, dynamic_ncols=True) as bar:
        for rule in models:
            bar.set_postfix_str(rule.model)
            acc = clean_accuracy(rule, x, y, budget.passes, seed)
            curves.append(row(rule, 0.0, "clean", acc, n, passes=rule.calls(budget.passes)))
            used = budget.of(rule)
            attack, apgd = settings(rule, used, seed), apgd_settings(rule, used, seed)
            rows, min_norm = min_norm_rows(
                rule, data, n, eps_list, budget, profile, root, args.device, tqdm.write
            )
            curves += rows
            unbounded[rule.key] = 100 * float(min_norm.pop(math.inf).mean())
            bar.update(1)
            for norm, grid in (("L2", eps_list), ("Linf", linf)):
                robust[norm][rule.kind, rule.param] = {}
                for eps in grid:
                    rows, worst, doubled = ensemble_point(
                        rule, x, y, eps, norm, (attack, apgd), min_norm.get(eps), root,
                        check=args.check_eps is None or eps in checked_eps,
                    )  # fmt: skip
                    curves += rows
                    checks += [doubled] if doubled else []
                    robust[norm][rule.kind, rule.param][eps] = worst
                    bar.update(1)
        for rule, norm, eps, family, name, value in points:
            bar.set_postfix_str(f"{rule.model}, {norm} {eps:g}, {family}, {name} {value}")
            used = budget.of(rule)
            acc = sweep_point(rule, xc, yc, norm, eps, family, replace(used, **{name: value}),
                              seed, root)  # fmt: skip
            convergence.append(acc | {"varied": name, "value": value, "used": getattr(used, name)})
            bar.update(1)
    curves, convergence, checks = (pd.DataFrame(r) for r in (curves, convergence, checks))
    flat = flatness(convergence, budget) if len(convergence) else None
    masking = masking_checks(curves, checks, unbounded, flat)
    return curves, convergence, checks, masking, robust, transfer


def sweep_point(
    rule: Rule, x, y, norm: str, eps: float, family: str, budget: Budget, seed: int, root: Path
) -> dict:
    """One point of the convergence sweep: ``family``'s accuracy (%) on ``rule`` at ``eps``
    under ``budget``, as a CSV row. At the curves' own budget and images it is the curves'
    cached result."""
    if family == "pgd":
        attack = settings(rule, budget, seed) | ({} if norm == "L2" else {"norm": norm})
        acc, _ = pgd_accuracy(rule, x, y, eps, attack, root, tqdm.write)
    else:
        attack = apgd_settings(rule, budget, seed)
        acc, _, _ = apgd_accuracy(rule, x, y, eps, norm, family.removeprefix("apgd-"), attack,
                                  root, tqdm.write)  # fmt: skip
    return row(rule, eps, family, acc, len(x), **(attack | {"norm": norm}))


def flatness(convergence: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    """Per model, norm, eps, attack family and varied setting: accuracy at the budget used,
    the lowest at any larger setting, the drop between them, and whether the curve is flat
    there (drop <= FLAT points); ``max_rise``, the largest rise from one setting to the
    next larger one (more effort should never help the model, Carlini et al. 2019)."""
    keys = ["model", "kind", "param", "norm", "eps_126", "eps_255", "attack", "varied"]
    rows = []
    for key, curve in convergence.groupby(keys, sort=False):
        curve = curve.sort_values("value")
        used = curve["used"].iloc[0] if "used" in curve else getattr(budget, key[-1])
        at = curve.loc[curve["value"] == used, "acc"]
        beyond = curve.loc[curve["value"] >= used, "acc"]
        if at.empty:  # the grid skips the budget: nothing to judge
            continue
        drop = float(at.iloc[0] - beyond.min())
        rows.append(dict(zip(keys, key)) | {
            "budget": used, "largest": curve["value"].max(), "acc_budget": float(at.iloc[0]),
            "acc_lowest_beyond": float(beyond.min()), "drop": drop, "flat": drop <= FLAT,
            "max_rise": float(curve["acc"].diff().max()) if len(curve) > 1 else 0.0,
        })  # fmt: skip
    return pd.DataFrame(rows)


def masking_checks(
    curves: pd.DataFrame, checks: pd.DataFrame, unbounded: dict, flat: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The gradient-masking checks of Carlini et al. (2019, Section 5), per model and norm:
    the unbounded attack reaches 0% accuracy; the worst case never rises with eps; the
    attack on the model itself beats transfer from its mean-weights net; twice the budget
    lowers the worst case by at most 0.5 points; and, where the sweep ran (``flat``, from
    :func:`flatness`), more steps never raise accuracy. ``passes``: all that apply hold (a
    stochastic rule's verdicts are draws, so a rise up to 1 point counts as flat)."""
    rows = []
    for (model, kind, param, norm), part in curves.groupby(
        ["model", "kind", "param", "norm"], sort=False
    ):
        worst = part[part["attack"] == WORST].sort_values("eps_126")
        if worst.empty:
            continue
        noise = 0.0 if part["passes"].max() <= 1 else 1.0  # points a fresh verdict may move
        rise = float(worst["acc"].diff().max()) if len(worst) > 1 else 0.0
        transfer = part[part["attack"] == TRANSFER].set_index("eps_126")["acc"]
        own = part[part["attack"].str.startswith(("pgd", "apgd"))].groupby("eps_126")["acc"]
        gap = (own.min() - transfer).dropna()  # the best white-box attack minus transfer
        done = checks.iloc[:0] if checks.empty else checks[checks["model"].eq(model)]
        done = done[done["norm"] == norm] if len(done) else done
        swept = pd.DataFrame() if flat is None or flat.empty else flat[
            (flat["model"] == model) & (flat["norm"] == norm) & (flat["varied"] == "steps")
        ]  # fmt: skip
        row = {
            "model": model, "kind": kind, "param": param, "norm": norm,
            "acc_unbounded": unbounded.get((kind, param), math.nan) if norm == "L2" else math.nan,
            "max_rise_with_eps": rise,
            "whitebox_minus_transfer": float(gap.max()) if len(gap) else math.nan,
            "drop_2x": float(done["drop"].max()) if len(done) else math.nan,
            "max_rise_with_steps": float(swept["max_rise"].max()) if len(swept) else math.nan,
        }  # fmt: skip
        tests = [row["max_rise_with_eps"] <= noise]
        tests += [row["acc_unbounded"] == 0] if norm == "L2" else []
        tests += [row["whitebox_minus_transfer"] <= noise] if len(gap) else []
        tests += [row["drop_2x"] <= 0.5] if len(done) else []
        tests += [row["max_rise_with_steps"] <= noise] if len(swept) else []
        rows.append(row | {"passes": all(tests)})
    return pd.DataFrame(rows)


def masking_report(masking: pd.DataFrame) -> str:
    """The gradient-masking checks in one paragraph and a table of the models that fail."""
    if masking.empty:
        return ""
    failed = masking[~masking["passes"]]
    return (
        f"\nGradient-masking checks (Carlini et al. 2019; epsilon_masking_seed<S>.csv): "
        f"{int(masking['passes'].sum())} of {len(masking)} (model, norm) pairs pass all that "
        "apply (the unbounded minimum-norm attack reaches 0%; the worst case never rises with "
        "eps; the model's own attack beats transfer from its mean-weights net; twice the "
        "budget lowers it by at most 0.5 points; where the sweep ran, more steps never "
        "raise it)."
        + ("\n\n" + failed.to_markdown(index=False, floatfmt=".1f") + "\n" if len(failed) else "\n")
    )


def ensemble_point(
    rule: Rule, x, y, eps: float, norm: str, budgets: tuple, min_norm, root, check: bool = True
):
    """One rule at one eps: every attack of the ensemble, the per-example worst case, and
    (if ``check``) the check that reruns the strongest fixed-budget attack at twice its
    budget: its drop is the worst case's fall when the doubled attack joins the ensemble,
    both judged on the same fresh draws.

    The worst case picks, per example, the attack whose r left the fewest draws correct on
    that attack's own passes, then judges the picked r on fresh passes, so that the minimum
    over noisy verdicts adds no bias. Doubling keeps PGD's step length (twice the path) and
    doubles the steps and EOT samples (not the restarts, which would make the check 8
    times the attack's cost).

    :param budgets: (PGD's settings, APGD's settings) for ``rule``.
    :param min_norm: ((n,) robust, (n, D) r) of the minimum-norm attack at eps (L2), or None.
    :returns: CSV rows, the worst case per example (n,), and the check's row (or None).
    """
    attack, apgd = budgets
    n, rows, members = len(x), [], {}
    if norm == "L2":
        members["min-norm"] = _min_norm_member(rule, x, y, eps, min_norm[1], apgd)
    else:
        attack = attack | {"norm": norm}
    acc, *members["pgd"] = pgd_accuracy(rule, x, y, eps, attack, root, tqdm.write, True)
    rows.append(row(rule, eps, "pgd", acc, n, **(attack | {"norm": norm})))
    for loss in apgd_losses(rule):
        acc, *members[f"apgd-{loss}"] = apgd_accuracy(
            rule, x, y, eps, norm, loss, apgd, root, tqdm.write
        )
        rows.append(row(rule, eps, f"apgd-{loss}", acc, n, norm, **apgd))
    if rule.mean is not None:
        acc, *members[TRANSFER] = mean_transfer(rule, x, y, eps, attack, apgd, root)
        rows.append(row(rule, eps, TRANSFER, acc, n, **(attack | {"norm": norm})))
    worst = _rejudged(rule, x, y, list(members.values()), apgd["passes"], apgd["seed"] + 1)
    acc = 100 * float(worst.mean())
    rows.append(row(rule, eps, WORST, acc, n, norm, members=len(members)))
    if not check:
        return rows, worst, None
    fixed = {  # the fixed-budget attacks on the rule itself
        k: float(v[0].double().mean()) for k, v in members.items() if k.startswith(("pgd", "apgd"))
    }
    strongest = min(fixed, key=fixed.get)
    if strongest == "pgd":
        double = attack | {
            "steps": 2 * attack["steps"],
            "eot": 2 * attack["eot"],
            "step_size": 2.5 * eps / attack["steps"],
        }
        _, *again = pgd_accuracy(rule, x, y, eps, double, root, tqdm.write, True)
    else:
        double = apgd | {"steps": 2 * apgd["steps"], "eot": 2 * apgd["eot"]}
        loss = strongest.removeprefix("apgd-")
        _, *again = apgd_accuracy(rule, x, y, eps, norm, loss, double, root, tqdm.write)
    picked = (worst, _pick(list(members.values()))[1])
    # the same fresh draws judge the committed r alone and the pick with the doubled attack
    # (common random numbers), so the drop is what the doubled attack adds, not the noise
    # of two independent verdicts (acc_rejudged - acc measures that noise)
    alone = _rejudged(rule, x, y, [picked], apgd["passes"], apgd["seed"] + 2)
    both = _rejudged(rule, x, y, [picked, again], apgd["passes"], apgd["seed"] + 2)
    alone, with_double = 100 * float(alone.mean()), 100 * float(both.mean())
    check = row(rule, eps, WORST, acc, n, norm, strongest=strongest)
    check |= {"acc_2x": 100 * float(again[0].double().mean()), "acc_rejudged": alone,
              "worst_with_2x": with_double, "drop": alone - with_double}  # fmt: skip
    return rows, worst, check


def mean_transfer(rule: Rule, x, y, eps: float, attack: dict, apgd: dict, root: Path) -> tuple:
    """PGD on the rule's mean-weights net (:attr:`Rule.mean`) with ``attack``'s steps and
    restarts, its perturbations judged on the rule's own fresh draws: (acc %, (n,) robust,
    (n, D) r)."""
    source = Rule(
        f"{rule.name}_mean", "bnn-mu", rule.param, rule.mean, "logits", 0,
        {"rule": rule.fingerprint, "weights": "posterior mean"},
    )  # fmt: skip
    settings = attack | {"eot": 1, "passes": 1, "output": "logits"}
    _, _, r = pgd_accuracy(source, x, y, eps, settings, root, tqdm.write, True)
    robust = _rejudged(rule, x, y, [(torch.zeros(len(x)), r)], apgd["passes"], apgd["seed"] + 3)
    return 100 * float(robust.mean()), robust, r


@torch.no_grad()
def _min_norm_member(rule: Rule, x, y, eps: float, r: torch.Tensor, apgd: dict) -> tuple:
    """The minimum-norm attack as a member of the ensemble, judged as the others are:
    its r (n, D) (0 where it failed or is longer than eps) on fresh draws. A stochastic
    rule's r sits at the boundary of the draws that found it, where fresh draws split, so
    it is stretched to length eps first (clipped to the pixel box). Returns ((n,) fraction
    of fresh draws correct, (n, D) r)."""
    r = r.to(x)
    if rule.samples:
        norms = r.norm(dim=1, keepdim=True)  # (n, 1)
        r = torch.where(norms > 0, r * eps / norms.clamp(min=1e-12), r)
        r = (x + r).clamp(0, X_MAX) - x
    pyro.set_rng_seed(apgd["seed"] + 4)
    out = run_probs(rule.fn, x + r, apgd["passes"])  # (draws, n, C), logits or probs
    return (out.argmax(-1) == y).double().mean(0).cpu(), r.cpu()


def _pick(members: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example, the (robust, r) of the member whose r left the fewest draws correct."""
    robust = torch.stack([m[0].double() for m in members])  # (A, n)
    best = robust.argmin(0)  # (n,)
    r = torch.stack([m[1] for m in members])[best, torch.arange(robust.shape[1])]  # (n, D)
    return robust.min(0).values, r


@torch.no_grad()
def _rejudged(rule: Rule, x, y, members: list[tuple], passes: int, seed: int) -> torch.Tensor:
    """(n,) fraction of fresh draws still correct at the picked r of :func:`_pick`."""
    _, r = _pick(members)
    pyro.set_rng_seed(seed)
    out = run_probs(rule.fn, x + r.to(x), passes)  # (draws, n, C), logits or probs
    return (out.argmax(-1) == y).double().mean(0).cpu()


def check_report(checks: pd.DataFrame) -> str:
    """The doubled-budget check in one paragraph: where it lowers the worst case most."""
    if checks.empty:
        return ""
    top = checks.sort_values("drop", ascending=False).head(5)
    noise = (checks["acc_rejudged"] - checks["acc"]).abs().max()
    return (
        "\nThe strongest fixed-budget attack of each point rerun at twice its steps and EOT "
        f"samples (epsilon_check_seed<S>.csv) lowers the worst case by at most "
        f"{checks['drop'].max():.1f} points over {len(checks)} points, the worst case with and "
        "without it judged on the same fresh draws (acc_rejudged; its distance from acc is "
        f"the noise of a verdict, at most {noise:.1f} points); the largest drops:\n\n"
        + top[
            [
                "model",
                "norm",
                "eps_126",
                "strongest",
                "acc",
                "acc_rejudged",
                "worst_with_2x",
                "drop",
            ]
        ].to_markdown(index=False, floatfmt=".1f")
        + "\n"
    )


def write_seed(results: Path, seed: int, curves, convergence, markdown: str, n: int) -> None:
    """One seed's epsilon_curves_seed<S>.csv/.md/.png and epsilon_convergence_seed<S>_n<N>.csv
    (N: the sweep's images)."""
    out = results / f"epsilon_curves_seed{seed}"
    atomic_write(out.with_suffix(".csv"), lambda tmp: curves.to_csv(tmp, index=False))
    if not convergence.empty:
        conv_path = results / f"epsilon_convergence_seed{seed}_n{convergence['n'].iloc[0]}.csv"
        atomic_write(conv_path, lambda tmp: convergence.to_csv(tmp, index=False))
    atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))
    plot(curves, out.with_suffix(".png"), f"seed {seed}, n = {n}")
    print(markdown)


def combine(curves, values_per_seed: list, transfer, results: Path, made_by: str, n: int):
    """Over the seeds run: the curves' mean and sd (epsilon_curves.csv/.md/.png), the
    claims' intervals over seeds and images (epsilon_intervals.csv) and the reference
    defence under transfer, per source set (transfer_adv.csv)."""
    seeds = sorted(curves["seed"].unique())
    keys = ["model", "kind", "param", "norm", "attack", "eps_126", "eps_255"]
    mean = curves.groupby(keys, sort=False)["acc"].agg(acc="mean", sd="std", seeds="count")
    mean = mean.reset_index()
    out = results / "epsilon_curves"
    atomic_write(out.with_suffix(".csv"), lambda tmp: mean.to_csv(tmp, index=False))
    table = intervals.summarise(values_per_seed)
    atomic_write(results / "epsilon_intervals.csv", lambda tmp: table.to_csv(tmp, index=False))
    transfer = transfer.assign(source=transfer["source"].map(without_seed))  # pool seeds
    per_set = transfer.groupby(["source", "multiplier"], sort=False)["acc"].mean().reset_index()
    atomic_write(results / "transfer_adv.csv", lambda tmp: per_set.to_csv(tmp, index=False))
    over_sets = per_set.groupby("multiplier")["acc"].mean()
    footer = f"{made_by} Seeds {', '.join(map(str, seeds))}.\n"
    markdown = (
        f"Mean (sd) over seeds {', '.join(map(str, seeds))}. "
        + report(mean, pd.DataFrame(), None)
        + "\nThe claims under the white-box worst case, as paired differences (points) with "
        f"{100 * intervals.LEVEL:g}% intervals over seeds and images ({intervals.METHOD}):\n\n"
        + table.to_markdown(index=False, floatfmt=".2f")
        + "\n\nThe adversarially trained net under transfer, on the rigorous attack sets of "
        f"the {per_set['source'].nunique()} source nets (mean over the sets and seeds, x + m r "
        "clipped to the box, as rigorous/transfer.csv scores the other models): "
        + ", ".join(f"x {m:g}: {acc:.1f}%" for m, acc in over_sets.items())
        + " (per set: transfer_adv.csv).\n\n"
        + footer
    )
    atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text(markdown))
    plot(mean, out.with_suffix(".png"), f"mean of seeds {', '.join(map(str, seeds))}, n = {n}")
    print(markdown)


def report(curves: pd.DataFrame, convergence: pd.DataFrame, budget: Budget | None) -> str:
    """The curves as wide markdown tables (one row per model; 'mean (sd)' if curves has an
    sd column): the worst case over the attack ensemble first, then each attack, per norm;
    and the convergence check, if it ran."""
    order = list(dict.fromkeys(curves["model"]))
    if "sd" in curves:
        cells = [f"{m:.1f} ({sd:.1f})" for m, sd in zip(curves["acc"], curves["sd"].fillna(0))]
        curves = curves.assign(acc=cells)
    clean = curves[curves["attack"] == "clean"]

    def wide(norm: str, attack: str) -> str:
        part = curves[(curves["norm"] == norm) & (curves["attack"] == attack)]
        part = pd.concat([clean, part]) if attack == WORST else part
        table = part.pivot(index="model", columns="eps_126", values="acc")
        table = table.loc[[m for m in order if m in table.index]]
        table.columns = ["clean" if e == 0 else f"{e:g} ({to_255(e):.2f})" for e in table.columns]
        return table.to_markdown(floatfmt=".1f")

    out = []
    for norm, unit in (("L2", "L2"), ("Linf", "L-inf")):
        attacks = sorted(set(curves.loc[curves["norm"] == norm, "attack"]) - {"clean", WORST})
        if not attacks:
            continue
        out.append(
            f"Robust accuracy (%) under {unit}, the per-example worst case over the attack "
            f"ensemble ({', '.join(attacks)}), by eps on the /126 scale (on [0, 1] pixels in "
            f"brackets):\n\n{wide(norm, WORST)}\n"
        )
        out += [f"\n{unit}, {attack} alone:\n\n{wide(norm, attack)}\n" for attack in attacks]
    out = "\n".join(out)
    if convergence.empty:
        return out
    flat = flatness(convergence, budget)
    grids = ", ".join(
        f"{name} {', '.join(map(str, sorted(part['value'].unique())))}"
        for name, part in convergence.groupby("varied")
    )
    steep = flat[~flat["flat"]].drop(columns=["kind", "param", "flat"])
    return out + (
        f"\nConvergence on the first {convergence['n'].iloc[0]} test images "
        f"(epsilon_convergence_seed<S>_n<N>.csv): accuracy with one setting varied ({grids}), the "
        f"others at the budget above, for {convergence['model'].nunique()} models at "
        f"{len(convergence.groupby(['norm', 'eps_126']))} (norm, eps) pairs, under PGD and "
        f"APGD-CE (two step rules). {int(flat['flat'].sum())} of {len(flat)} curves are flat "
        f"at the budget used: no larger setting lowers accuracy by more than {FLAT:g} point "
        "(epsilon_flatness_seed<S>_n<N>.csv)."
        + ("" if steep.empty else " Those that are not:\n\n"
           + steep.to_markdown(index=False, floatfmt=".1f"))
        + "\n"
    )  # fmt: skip


def plot(curves: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against eps, every model: the worst case over the attack ensemble solid
    (from clean at eps 0), PGD alone dotted; L2 left, L-inf right, [0, 1] pixels on top."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 6), sharey=True)
    for ax, norm in zip(axes, ("L2", "Linf")):
        for i, (model, rows) in enumerate(curves.groupby("model", sort=False)):
            color = plt.cm.tab20(i % 20)
            worst = rows[(rows["attack"] == "clean") | ((rows["norm"] == norm) &
                         (rows["attack"] == WORST))].sort_values("eps_126")  # fmt: skip
            ax.plot(worst["eps_126"], worst["acc"], "o-", color=color, ms=3, lw=1.2,
                    label=model)  # fmt: skip
            pgd = rows[(rows["norm"] == norm) & (rows["attack"] == "pgd")]
            ax.plot(pgd["eps_126"], pgd["acc"], ":", color=color, lw=1)
        unit = "L2" if norm == "L2" else "L-inf"
        ax.set(xlabel=f"eps, {unit} on the /126 scale", ylim=(0, 100), title=unit)
        top = ax.secondary_xaxis("top", functions=(to_255, lambda e: e * X_MAX))
        top.set_xlabel(f"eps, {unit} on [0, 1] pixels (/255)")
    axes[0].set_ylabel("robust accuracy (%)")
    legend = "solid: worst case of the ensemble\ndotted: PGD + EOT alone"
    axes[1].legend(fontsize=7, title=legend, title_fontsize=7, loc="center left",
                   bbox_to_anchor=(1.01, 0.5))  # fmt: skip
    fig.suptitle(f"White-box robust accuracy against eps ({title})")
    save_png(fig, path)


if __name__ == "__main__":
    exit_timed(main)
