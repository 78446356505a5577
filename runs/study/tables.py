"""Tables 1-4 and the rigorous controls, as long-format DataFrames (one row per cell).

Every model goes through the one harness, :func:`pyro_bnn.evaluate.evaluate`, as a prob
function; accuracies are in percent, next to the paper's value where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from pyro_bnn.attacks import perturb
from pyro_bnn.attacks.paper import KERAS_EPSILON, live_targets
from pyro_bnn.bnn import init_guide
from pyro_bnn.data import MNIST, X_MAX
from pyro_bnn.evaluate import as_probs, evaluate
from pyro_bnn.guides import init_to_net, make_guide
from pyro_bnn.nets import l2_penalty
from pyro_bnn.predict import (
    ensemble_fn,
    mean_fn,
    posterior_mean,
    sample_weights,
    single_sample_fn,
)
from pyro_bnn.pruning import prune

from . import paper


@dataclass
class Zoo:
    """Everything trained for one seed. bnns: rho -> (model, guide); plains: lam -> MLP;
    sources: the source nets; controls: (control, rho) -> (model, guide)
    (runs.study.zoo.CONTROLS); matched: lam -> MLP trained as the BNNs are
    (runs.study.training.matched); paper_sources: the paper protocol's own source nets,
    trained as the authors' were, where the profile trains them (:meth:`sources_of`)."""

    seed: int
    bnns: dict
    plains: dict
    sources: list
    pool: list
    controls: dict = field(default_factory=dict)
    matched: dict = field(default_factory=dict)
    paper_sources: list = field(default_factory=list)

    def sources_of(self, protocol: str) -> list:
        """The source nets ``protocol`` attacks: the paper protocol's own where it has them,
        else the shared ones."""
        return self.paper_sources if protocol == "paper" and self.paper_sources else self.sources

    def prob_fns(self, runs: int) -> dict:
        """(kind, param) -> prob function of every FC-100-100-10 model: BNNs as single
        samples (``runs`` of them), baselines as they are, then :meth:`control_fns`."""
        fns = {("bnn", rho): single_sample_fn(b, g, runs) for rho, (b, g) in self.bnns.items()}
        fns |= {("plain", lam): as_probs(net) for lam, net in self.plains.items()}
        return fns | self.control_fns(runs)

    def control_fns(self, runs: int) -> dict:
        """(kind, param) -> prob function of the controls that isolate weight sampling:
        each BNN's posterior mean ('bnn-mu', deterministic), the training controls as
        single samples, and the plain nets trained as the BNNs are ('plain-matched')."""
        fns = {("bnn-mu", rho): mean_fn(b, g) for rho, (b, g) in self.bnns.items()}
        fns |= {key: single_sample_fn(b, g, runs) for key, (b, g) in self.controls.items()}
        return fns | {("plain-matched", lam): as_probs(n) for lam, n in self.matched.items()}


@dataclass
class AttackSet:
    """One source net's attack set: r (N, D), success (N,), y (N,), index (N,), meta."""

    source: object
    tensors: dict
    meta: dict
    split: str

    def kept_index(self, keep_failures: bool) -> torch.Tensor:
        """(n,) indices into the split of the examples :meth:`eval_set` scores."""
        t = self.tensors
        return t["index"] if keep_failures else t["index"][t["success"]]

    def eval_set(
        self, data: MNIST, multiplier: float, keep_failures: bool, clip: bool = False
    ) -> tuple:
        """(x, y) to score: x + multiplier * r, failures dropped unless keep_failures.

        By default perturbations are not clipped back into the pixel box when multiplier
        != 1, as in the authors' code; with multiplier 1 they are in the box already.
        """
        t = self.tensors
        keep = torch.ones_like(t["success"]) if keep_failures else t["success"]
        x = data.split(self.split).x[self.kept_index(keep_failures)]
        return perturb(x, t["r"][keep], scale=multiplier, clip=clip), t["y"][keep]


def _pct(row: dict) -> dict:
    return {"acc": 100 * row["acc"], "acc_std": 100 * row["acc_std"], "n": row["n"]}


def _score(fn, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Accuracy (%) of fn on (x, y); NaN with n = 0 where an attack left no survivors."""
    if len(y) == 0:
        return {"acc": float("nan"), "acc_std": float("nan"), "n": 0}
    return _pct(evaluate(fn, x, y))


def _paper_cell(table: list, source, column: tuple, value) -> float | None:
    """The paper's figure for ``source`` (its row of ``table``) in the column of ``value``
    among ``column``; None where the paper has no such cell."""
    row = paper.source_row(source.arch, source.lam)
    if row is None or value not in column:
        return None
    return table[row][column.index(value)]


def table1(zoo: Zoo, data: MNIST, runs: int) -> pd.DataFrame:
    """Clean validation and test accuracy: BNNs single-sample (mean of runs); baselines."""
    rows = []
    for split_i, split in enumerate(("val", "test")):
        part = data.split(split)
        for rho, (bnn, guide) in zoo.bnns.items():
            row = evaluate(single_sample_fn(bnn, guide, runs), part.x, part.y)
            rows.append(
                {
                    "kind": "bnn",
                    "param": rho,
                    "split": split,
                    **_pct(row),
                    "nll": row["nll"],
                    "ece": row["ece"],
                    "paper": paper.TABLE1_BNN.get(rho, (None, None))[split_i],
                }
            )
        for lam, net in zoo.plains.items():
            row = evaluate(as_probs(net), part.x, part.y)
            rows.append(
                {
                    "kind": "plain",
                    "param": lam,
                    "split": split,
                    **_pct(row),
                    "nll": row["nll"],
                    "ece": row["ece"],
                    "paper": paper.TABLE1_PLAIN.get(lam, (None, None))[split_i],
                }
            )
        for (kind, param), fn in zoo.control_fns(runs).items():
            row = evaluate(fn, part.x, part.y)
            rows.append({"kind": kind, "param": param, "split": split, **_pct(row),
                         "nll": row["nll"], "ece": row["ece"], "paper": None})  # fmt: skip
    return pd.DataFrame(rows)


def keras_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy as Keras computes it on probabilities, each clipped to
    [KERAS_EPSILON, 1 - KERAS_EPSILON]: how the authors' notebook printed a net's loss.
    logits (N, C), y (N,) -> scalar."""
    probs = logits.softmax(-1).clamp(KERAS_EPSILON, 1 - KERAS_EPSILON)
    return -probs.gather(1, y[:, None]).log().mean()


def attack_summary(sets: list[AttackSet], data: MNIST, authors: bool = False) -> pd.DataFrame:
    """Per source: examples attacked, success rate, distortion (/126 and [0,1]), median L2,
    how many successes the source net already misclassified without any perturbation, and
    the source's accuracy (%) and loss (Keras' clipped cross-entropy, as the authors' notebook
    printed it, plus the eq. 6 penalty) on the split; for sets of the paper attack, the share
    of attacked examples with a live target at its start (:func:`live_targets`, the ceiling
    that Keras' clip puts on the survivors) and the survivors' rate among them;
    with ``authors`` (the paper protocol's sets), beside them the authors' notebook's
    survivors (as a rate of their 10,000 images), distortion, validation accuracy and loss
    (paper.AUTHORS_SETS)."""
    keys = (
        "n",
        "n_success",
        "success_rate",
        "distortion",
        "distortion_01",
        "median_l2",
        "median_l2_01",
    )
    rows = []
    for s in sets:
        ok = s.tensors["success"]
        x = data.split(s.split).x[s.tensors["index"][ok]]
        wrong = as_probs(s.source.net)(x).argmax(-1) != s.tensors["y"][ok]
        split = data.split(s.split)
        with torch.no_grad():
            logits = s.source.net(split.x)
            loss = keras_loss(logits, split.y) + l2_penalty(s.source.net, s.source.lam)
        live = None
        if s.meta.get("config", {}).get("protocol") == "paper":
            settings = s.meta["config"]["attack"]
            attacked = split.x[s.tensors["index"]], s.tensors["y"]
            live = live_targets(s.source.net, *attacked, r_init=settings["r_init"],
                                prob_clip=settings["prob_clip"]).any(-1)  # fmt: skip
        theirs = paper.AUTHORS_SETS.get((s.source.arch, s.source.lam)) if authors else None
        theirs = theirs or (None,) * 4
        rows.append(
            {
                "source": s.source.name,
                "arch": s.source.arch,
                "lam": s.source.lam,
                "split": s.split,
                **{k: s.meta["summary"][k] for k in keys},
                "already_wrong": int(wrong.sum()),
                "source_acc": 100 * float((logits.argmax(-1) == split.y).double().mean()),
                "source_loss": float(loss),
                "live_share": None if live is None else float(live.double().mean()),
                "success_rate_live": None if live is None or not live.any()
                else float(ok[live].double().mean()),
                "authors_success_rate": None if theirs[0] is None
                else theirs[0] / paper.AUTHORS_VAL_IMAGES,
                "authors_distortion": theirs[1],
                "authors_val_acc": theirs[2],
                "authors_val_loss": theirs[3],
                "attack_s": s.meta.get("wall_time_s"),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def multiplier_control(
    zoo: Zoo, sets: list[AttackSet], data: MNIST, runs: int, multipliers=(1.0, 1.5, 3.0)
) -> pd.DataFrame:
    """Every model on every set at every multiplier of r, failures dropped (paper protocol):
    separates the effect of the authors' x1.5 (BNN) versus x3 (baselines) from the models."""
    rows = []
    for s in sets:
        for mult in multipliers:
            x, y = s.eval_set(data, mult, keep_failures=False)
            for (kind, param), fn in zoo.prob_fns(runs).items():
                rows.append(
                    {
                        "source": s.source.name,
                        "kind": kind,
                        "param": param,
                        "multiplier": mult,
                        **_score(fn, x, y),
                    }
                )
    return pd.DataFrame(rows)


def table2(
    zoo: Zoo,
    sets: list[AttackSet],
    data: MNIST,
    runs: int,
    bnn_mult: float,
    plain_mult: float,
    keep_failures: bool,
) -> pd.DataFrame:
    """Accuracy of every BNN (single sample, mean of runs) and baseline on every set."""
    rows = []
    for s in sets:
        x_b, y_b = s.eval_set(data, bnn_mult, keep_failures)
        x_p, y_p = s.eval_set(data, plain_mult, keep_failures)
        for rho, (bnn, guide) in zoo.bnns.items():
            rows.append(
                {
                    "source": s.source.name,
                    "kind": "bnn",
                    "param": rho,
                    "multiplier": bnn_mult,
                    **_score(single_sample_fn(bnn, guide, runs), x_b, y_b),
                    "paper": _paper_cell(paper.TABLE2_BNN, s.source, paper.RHO_INITS, rho),
                }
            )
        for lam, net in zoo.plains.items():
            rows.append(
                {
                    "source": s.source.name,
                    "kind": "plain",
                    "param": lam,
                    "multiplier": plain_mult,
                    **_score(as_probs(net), x_p, y_p),
                    "paper": _paper_cell(paper.TABLE2_PLAIN, s.source, paper.LAMBDAS, lam),
                }
            )
        for (kind, param), fn in zoo.control_fns(runs).items():  # scored as their kin
            mult, x, y = (plain_mult, x_p, y_p) if kind == "plain-matched" else (bnn_mult, x_b, y_b)
            row = {"source": s.source.name, "kind": kind, "param": param, "multiplier": mult}
            rows.append(row | _score(fn, x, y) | {"paper": None})
    return pd.DataFrame(rows)


def table3(
    zoo: Zoo,
    sets: list[AttackSet],
    data: MNIST,
    sizes,
    bnn_mult: float,
    keep_failures: bool,
    rho: float = paper.TABLE3_RHO_INIT,
) -> pd.DataFrame:
    """Ensembles of N weight samples of Table 3's BNN, accuracy averaged over 100/N
    runs; with a pool of plain nets, the same for ensembles of N plain nets as a control."""
    bnn, guide = zoo.bnns[rho]
    rows = []
    for s in sets:
        x, y = s.eval_set(data, bnn_mult, keep_failures)
        for size in sizes:
            row = evaluate(ensemble_fn(bnn, guide, size), x, y)
            rows.append(
                {
                    "source": s.source.name,
                    "kind": "bnn",
                    "N": size,
                    **_pct(row),
                    "runs": row["runs"],
                    "paper": _paper_cell(paper.TABLE3, s.source, paper.ENSEMBLE_SIZES, size),
                }
            )
            if zoo.pool and size <= len(zoo.pool):
                row = evaluate(pool_fn(zoo.pool, size), x, y)
                rows.append(
                    {
                        "source": s.source.name,
                        "kind": "plain-ensemble",
                        "N": size,
                        **_pct(row),
                        "runs": row["runs"],
                        "paper": None,
                    }
                )
    return pd.DataFrame(rows)


def pool_fn(pool: list, size: int):
    """x -> (len(pool) // size, N, C): disjoint groups of ``size`` plain nets, probabilities
    averaged; differentiable in x, so white-box attacks can use it too."""
    groups = [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]

    def probs(x: torch.Tensor) -> torch.Tensor:
        # per group (size, N, C) -> (N, C); stacked (groups, N, C)
        return torch.stack([torch.stack([n(x).softmax(-1) for n in g]).mean(0) for g in groups])

    return probs


def table4(
    zoo: Zoo,
    sets: list[AttackSet],
    data: MNIST,
    rates,
    bnn_mult: float,
    keep_failures: bool,
    rho: float = paper.TABLE4_RHO_INIT,
    size: int = paper.TABLE4_ENSEMBLE,
) -> pd.DataFrame:
    """SNR-pruned BNN of Table 4, 100-sample ensembles, ranked globally and per tensor."""
    bnn, guide = zoo.bnns[rho]
    clean = {name: getattr(data, name) for name in ("val", "test")}
    # name: (x, y, the paper's row for that set)
    named = {name: (split.x, split.y, paper.TABLE4_CLEAN[name]) for name, split in clean.items()}
    for s in sets:
        row = paper.source_row(s.source.arch, s.source.lam)
        named[s.source.name] = (*s.eval_set(data, bnn_mult, keep_failures),
                                None if row is None else paper.TABLE4[row])  # fmt: skip
    rows = []
    for scope in ("global", "tensor"):
        for rate in rates:
            fn = ensemble_fn(bnn, prune(bnn, guide, rate, scope), size, runs=1)
            for name, (x, y, theirs) in named.items():
                ref = None
                if theirs is not None and rate in paper.PRUNE_RATES:
                    ref = theirs[paper.PRUNE_RATES.index(rate)]
                rows.append(
                    {
                        "scope": scope,
                        "rate": rate,
                        "set": name,
                        **_score(fn, x, y),
                        "paper": ref,
                    }
                )
    return pd.DataFrame(rows)


UNDERFLOW_GAP = float(-torch.log(torch.tensor(torch.finfo(torch.float32).tiny)))  # 87.3


@torch.no_grad()
def logit_gaps(zoo: Zoo, data: MNIST, draws: int = 10) -> pd.DataFrame:
    """The gap between the top two logits on the test images, per model that has logits:
    each BNN's single draws (``draws`` of them) and posterior mean, the training controls'
    draws, and the plain nets. Beyond UNDERFLOW_GAP every other class's float32 probability
    is below the smallest normal float, so a loss on clamped probabilities has no gradient
    there (gradient masking); a loss on logits does not care."""
    x = data.test.x
    nets = {("plain", lam): net for lam, net in zoo.plains.items()}
    nets |= {("plain-matched", lam): net for lam, net in zoo.matched.items()}
    rows = []
    models = {("bnn", rho): pair for rho, pair in zoo.bnns.items()} | zoo.controls
    for (kind, param), (bnn, guide) in models.items():
        logits = bnn.apply(x, sample_weights(bnn, guide, draws))  # (draws, N, C)
        rows.append(_gap_row(kind, param, logits))
        if kind == "bnn":
            rows.append(_gap_row("bnn-mu", param, bnn.apply(x, posterior_mean(bnn, guide))))
    for (kind, param), net in nets.items():
        rows.append(_gap_row(kind, param, net(x)))
    return pd.DataFrame(rows)


def _gap_row(kind: str, param: float, logits: torch.Tensor) -> dict:
    """One model's gap statistics; logits (..., N, C)."""
    top = logits.topk(2, dim=-1).values  # (..., N, 2)
    gap = (top[..., 0] - top[..., 1]).flatten().double().cpu()
    q50, q90 = (float(v) for v in gap.quantile(torch.tensor([0.5, 0.9]).double()))
    return {"kind": kind, "param": param, "gap_median": q50, "gap_q90": q90,
            "gap_max": float(gap.max()),
            "pct_over_underflow": 100 * float((gap > UNDERFLOW_GAP).double().mean())}  # fmt: skip


def sigma_moves(zoo: Zoo, moved: float = 0.1) -> pd.DataFrame:
    """How far training moved each BNN's sigma from softplus(rho_init), per parameter
    tensor: the median and 10th/90th percentiles of sigma, and the % of weights whose
    sigma moved by more than ``moved`` (relative). Unmoved sigmas make a BNN a net with
    fixed weight noise, which :func:`fixed_noise_control` scores."""
    rows = []
    for rho, (bnn, guide) in zoo.bnns.items():
        start = float(F.softplus(torch.tensor(float(rho))))
        for name, sigma in bnn.unflatten(guide.scales()["weights"]).items():
            sigma = sigma.flatten().double().cpu()
            q10, q50, q90 = (
                float(v) for v in sigma.quantile(torch.tensor([0.1, 0.5, 0.9]).double())
            )
            rows.append(
                {
                    "kind": "bnn",
                    "param": rho,
                    "tensor": name,
                    "sigma_init": start,
                    "sigma_p10": q10,
                    "sigma_median": q50,
                    "sigma_p90": q90,
                    "median_ratio": q50 / start,
                    "pct_moved": 100 * float(((sigma / start - 1).abs() > moved).double().mean()),
                }
            )
    return pd.DataFrame(rows)


def fixed_noise_control(
    zoo: Zoo, sets: list[AttackSet], data: MNIST, runs: int, bnn_mult: float, keep_failures: bool
) -> pd.DataFrame:
    """The lambda = 0 plain net with fixed weight noise N(0, softplus(rho_init)^2) at test
    time, one fresh draw per prediction (mean of runs): what a BNN whose sigma never trained
    and whose means were trained without noise would be. Scored clean (source 'clean', the
    test split) and on every set exactly as Table 2 scores the BNN of that rho_init, so its
    rows line up with Table 2's."""
    net = zoo.plains[0.0]
    fns = {}
    for rho, (bnn, _) in zoo.bnns.items():
        guide = make_guide("softplus-normal", bnn, rho_init=rho, init_loc_fn=init_to_net(bnn, net))
        init_guide(bnn, guide)
        fns[rho] = single_sample_fn(bnn, guide, runs)
    scored = [("clean", data.test.x, data.test.y, 1.0)]
    scored += [(s.source.name, *s.eval_set(data, bnn_mult, keep_failures), bnn_mult) for s in sets]
    rows = []
    for source, x, y, mult in scored:
        for rho, fn in fns.items():
            row = {"source": source, "kind": "fixed-noise", "param": rho, "multiplier": mult}
            rows.append(row | _score(fn, x, y))
    return pd.DataFrame(rows)


NOISE_SEARCH_STEPS = 40  # doublings (at most) and bisection steps of noise_at_norm's scale


def noise_at_norm(
    x: torch.Tensor, z: torch.Tensor, norms: torch.Tensor, *, steps: int = NOISE_SEARCH_STEPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """clip(x + s z) with a scale s per example such that the noise left inside the pixel
    box, clip(x + s z) - x, has L2 norm ``norms``.

    Clipping only shortens the noise, and each pixel's clipped move grows with s, so the
    norm left is nondecreasing in s: s is found by doubling from norms / |z| and then by
    bisection, vectorised over the batch with at most ``steps`` steps of each (in float64).
    Where even an unbounded s cannot leave that norm, the example is not reachable and
    gets that limit: every pixel on the face of the box that z points to.

    :param x: (N, D) inputs in [0, X_MAX] (the /126 scale).
    :param z: (N, D) noise directions, e.g. standard Gaussian.
    :param norms: (N,) the L2 norms wanted, >= 0 (the /126 scale).
    :returns: (x_noise (N, D) in the box, x's dtype; achieved (N,) = |x_noise - x|;
        reachable (N,) bool).

    >>> x_noise, achieved, ok = noise_at_norm(x, torch.randn_like(x), r.norm(dim=1))
    """
    if x.dim() != 2 or z.shape != x.shape or norms.shape != (len(x),):
        raise ValueError(
            f"x and z must be (N, D) and norms (N,), got {tuple(x.shape)}, "
            f"{tuple(z.shape)}, {tuple(norms.shape)}"
        )
    if (norms < 0).any() or not norms.isfinite().all():
        raise ValueError("norms must be finite and >= 0")
    x64, z64, target = x.double(), z.double(), norms.double()

    def left(s: torch.Tensor) -> torch.Tensor:  # s: (N,) -> norm left in the box (N,)
        return ((x64 + s[:, None] * z64).clamp(0.0, X_MAX) - x64).norm(dim=1)

    face = torch.where(z64 > 0, X_MAX, torch.where(z64 < 0, 0.0, x64))  # s -> infinity
    reachable = target <= (face - x64).norm(dim=1)
    lo = target / z64.norm(dim=1).clamp_min(1e-12)  # the unclipped noise: left(lo) <= target
    hi = lo.clone()
    for _ in range(steps):
        short = reachable & (left(hi) < target)
        if not short.any():
            break
        hi = torch.where(short, 2 * hi, hi)
    for _ in range(steps):  # left(lo) <= target <= left(hi) where reachable
        mid = (lo + hi) / 2
        below = left(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    x_noise = (x64 + hi[:, None] * z64).clamp(0.0, X_MAX)
    x_noise = torch.where(reachable[:, None], x_noise, face).to(x.dtype)
    return x_noise, (x_noise - x).norm(dim=1), reachable


def noise_control(
    zoo: Zoo, sets: list[AttackSet], data: MNIST, runs: int, seed: int
) -> pd.DataFrame:
    """Gaussian noise that, inside the pixel box, has each example's perturbation norm.

    Noise scaled to the norm and then clipped to the box would keep only about 0.75x of it
    on MNIST (the median), so the scale is searched per example (:func:`noise_at_norm`).
    Every row carries the set's norms so the reader can check: l2_intended and l2_achieved,
    medians over the examples with r != 0; l2_ratio, the median of achieved / intended over
    them; n_unreachable, examples where the box cannot hold noise of their norm.

    The noise is drawn on the CPU (a seeded CPU generator) and moved to the data's device,
    so it is the same noise on every device."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for s in sets:
        x_adv, y = s.eval_set(data, 1.0, keep_failures=True)
        x = data.split(s.split).x[s.tensors["index"]]
        z = torch.randn(x.shape, generator=gen).to(x.device)
        norms = s.tensors["r"].norm(dim=1)
        x_noise, achieved, reachable = noise_at_norm(x, z, norms)
        moved = norms > 0
        norm_cols = {
            "l2_intended": _median(norms[moved]),
            "l2_achieved": _median(achieved[moved]),
            "l2_ratio": _median(achieved[moved] / norms[moved]),
            "n_unreachable": int((~reachable).sum()),
        }
        for (kind, param), fn in zoo.prob_fns(runs).items():
            rows.append(
                {
                    "source": s.source.name,
                    "kind": kind,
                    "param": param,
                    "acc_noise": 100 * evaluate(fn, x_noise, y)["acc"],
                    "acc_adv": 100 * evaluate(fn, x_adv, y)["acc"],
                    **norm_cols,
                }
            )
    return pd.DataFrame(rows)


def _median(values: torch.Tensor) -> float:
    """The lower median of a 1-D tensor, as a float; nan when it is empty."""
    return float(values.median()) if len(values) else float("nan")


TRANSFER_MULTIPLIERS = (1.0, 1.5, 2.0, 3.0)  # the transfer sweep's multiples of r


def transfer_sweep(
    fns: dict, sets: list[AttackSet], data: MNIST, multipliers=TRANSFER_MULTIPLIERS
) -> pd.DataFrame:
    """Accuracy of every model on x + m r, clipped to the pixel box, at every multiple m of
    each set's r: transfer at every size, not at the source's minimum norm alone. Every
    example counts (a failed attack leaves it unperturbed). With the models' own white-box
    sets among ``sets`` this is also reverse transfer: a BNN's set scores the plain nets
    and the other BNNs (its own row is white-box).

    :param fns: (kind, param) -> prob function, e.g. ``zoo.prob_fns(runs)`` (BNNs
        single-sample, mean of runs).
    """
    rows = []
    for s in sets:
        x, r, y = data.split(s.split).x[s.tensors["index"]], s.tensors["r"], s.tensors["y"]
        for mult in multipliers:
            x_adv = perturb(x, r, scale=mult)  # (N, D), in the box
            for (kind, param), fn in fns.items():
                row = {"source": s.source.name, "kind": kind, "param": param, "multiplier": mult}
                rows.append(row | _score(fn, x_adv, y))
    return pd.DataFrame(rows)


WHITEBOX_MULTIPLES = (1.0, 1.1, 1.25, 1.5, 2.0)  # the white-box curve's multiples of r


def whitebox_curve(fn, x: torch.Tensor, tensors: dict, multiples=WHITEBOX_MULTIPLES) -> list[dict]:
    """Accuracy of ``fn`` at x + m r, clipped to the pixel box, for every multiple m, on the
    examples the attack succeeded on.

    A minimum-norm r sits on the model's decision boundary, where a stochastic model's
    fresh sample is often right again, so its accuracy at r alone says little: the curve
    over m shows how fast it falls beyond the boundary. Examples where the attack failed
    (r = 0) are not scored, as they would count as clean at every m; the attack's success
    rate goes beside the curve instead.

    :param fn: prob function of the attacked model, x (N, D) -> (N, C) or (R, N, C).
    :param x: (N, D) the attacked inputs in [0, X_MAX].
    :param tensors: the attack set's r (N, D), success (N,) and y (N,).
    :returns: one dict per multiple: multiplier, n_scored, acc and acc_std (in %, nan when
        the attack succeeded on no example).

    >>> whitebox_curve(single_sample_fn(bnn, guide, 100), data.test.x[:1000], tensors)
    """
    ok = tensors["success"]
    x_ok, r_ok, y_ok = x[ok], tensors["r"][ok], tensors["y"][ok]
    nan = float("nan")
    rows = []
    for mult in multiples:
        point = {"multiplier": mult, "n_scored": len(y_ok), "acc": nan, "acc_std": nan}
        if len(y_ok):
            row = evaluate(fn, perturb(x_ok, r_ok, scale=mult), y_ok)
            point |= {"acc": 100 * row["acc"], "acc_std": 100 * row["acc_std"]}
        rows.append(point)
    return rows


def whitebox(results: list[tuple[str, str, float, dict, list[dict]]]) -> pd.DataFrame:
    """Rows for white-box attacks, one per multiple of r: (kind, attack, param, summary,
    :func:`whitebox_curve`), with the attack's n, success_rate, median_l2 and distortion
    beside each point of the curve."""
    return pd.DataFrame(
        [
            {
                "kind": kind,
                "attack": attack,
                "param": param,
                "n": s["n"],
                "success_rate": s["success_rate"],
                "median_l2": s["median_l2"],
                "distortion": s["distortion"],
                **point,
            }
            for kind, attack, param, s, curve in results
            for point in curve
        ]
    )
