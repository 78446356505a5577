"""Many BNNs in one SVI step: K :class:`~pyro_bnn.bnn.BayesianMLP` s of one architecture and
prior, each with the paper's softplus guide, trained as one stacked (K, P) problem.

The loss is the per-datapoint ELBO of :class:`~pyro_bnn.bnn.DatapointELBO` with one weight
sample (Section 2.1, eqs. 3-4), computed without Pyro's tracing. One fused pass draws
w = mu + softplus(rho) * eps (eq. 1) and the Monte Carlo KL log q(w) - log p(w) under the
prior (eq. 2), with a hand-written backward; the K nets run as batched matrix products.
``tests/test_stack.py`` checks its loss and gradients against Pyro's Trace_ELBO.

Each model keeps its own seed, minibatch order, weight-noise generator, early-stopping
state, best epoch and checkpoint file, so row k of a stack trains as that model would
alone: :func:`~pyro_bnn.train.fit_svi` runs this class of model as a stack of one.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .artifacts import load_checkpoint, save_checkpoint
from .bnn import BayesianMLP, init_guide
from .data import Split, training_data
from .fitting import (
    Callback,
    FitResult,
    OptimizerFactory,
    check_device,
    check_loop,
    check_positive,
    check_split,
    epoch_order,
    make_optimizer,
    optimizer_config,
)
from .guides import AutoSoftplusNormal
from .likelihoods import Categorical
from .predict import predictive
from .priors import ScaleMixtureNormal

__all__ = ["fit_stack", "fused_kl", "stack_loss", "stack_problem"]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log1p(e: torch.Tensor) -> torch.Tensor:
    """log(1 + e) for e >= 0 from vectorised log alone (Goldberg's trick; torch's log1p
    is a scalar loop on CPU)."""
    u = 1 + e
    return torch.where(u == 1, e, torch.log(u) * e / (u - 1))


def _prior_terms(prior) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """w -> (log p(w), d log p / dw) elementwise, for the priors the stack supports."""
    if isinstance(prior, ScaleMixtureNormal):
        c1, h1, c2, h2 = prior._c1, prior._h1, prior._c2, prior._h2

        def mixture(w):
            w2 = w * w
            a, b = c1 - h1 * w2, c2 - h2 * w2  # log of each weighted component
            gap = -(a - b).abs()
            log_p = torch.maximum(a, b) + _log1p(gap.clamp_min(-80.0).exp())
            share = torch.sigmoid(a - b)  # the first component's responsibility
            return log_p, -2.0 * w * (h2 + share * (h1 - h2))

        return mixture
    loc, scale = float(prior.loc), float(prior.scale)
    const = -math.log(scale) - LOG_SQRT_2PI

    def normal(w):
        z = (w - loc) / scale
        return const - 0.5 * z * z, -z / scale

    return normal


_KERNELS: dict[tuple[str, bool], tuple[Callable, Callable]] = {}


def _kernels(prior, compile: bool):
    """The fused forward (mu, rho, eps) -> (w, kl, saved...) and its backward, made once
    per prior and compile setting (torch.compile compiles each on first use)."""
    key = (repr(prior), compile)
    if key not in _KERNELS:
        _KERNELS[key] = _make_kernels(prior, compile)
    return _KERNELS[key]


def _make_kernels(prior, compile: bool):
    terms = _prior_terms(prior)

    def forward(mu, rho, eps):
        e = rho.clamp_max(20.0).exp()
        u = 1 + e
        sigma = torch.where(rho > 20.0, rho, _log1p(e))  # softplus(rho)
        w = mu + sigma * eps
        log_p, dlog_p = terms(w)
        # log q(w) = sum(-log sigma - eps^2 / 2) - P log sqrt(2 pi)
        kl = (-torch.log(sigma) - 0.5 * eps * eps - log_p).sum(-1) - mu.shape[-1] * LOG_SQRT_2PI
        return w, kl, sigma, e / u, dlog_p  # e / u = sigmoid(rho) = dsigma / drho

    def backward(eps, sigma, dsigma, dlog_p, grad_w, grad_kl):
        grad_kl = grad_kl.unsqueeze(-1)
        grad_mu = grad_w - grad_kl * dlog_p
        grad_rho = dsigma * (grad_mu * eps - grad_kl / sigma)
        return grad_mu, grad_rho

    if compile:
        forward = torch.compile(forward, dynamic=False)
        backward = torch.compile(backward, dynamic=False)
    return forward, backward


class _FusedKL(torch.autograd.Function):
    """(mu, rho, eps) (K, P) -> (w (K, P), Monte Carlo KL (K,)), backward by hand:
    dKL/dmu = -p'(w)/p(w); dKL/drho = sigmoid(rho) (-1/sigma - eps p'(w)/p(w))."""

    @staticmethod
    def forward(ctx, mu, rho, eps, kernels):
        w, kl, sigma, dsigma, dlog_p = kernels[0](mu, rho, eps)
        ctx.save_for_backward(eps, sigma, dsigma, dlog_p)
        ctx.backward_kernel = kernels[1]
        return w, kl

    @staticmethod
    def backward(ctx, grad_w, grad_kl):
        grad_mu, grad_rho = ctx.backward_kernel(*ctx.saved_tensors, grad_w, grad_kl)
        return grad_mu, grad_rho, None, None


def fused_kl(prior, mu: torch.Tensor, rho: torch.Tensor, eps: torch.Tensor, *, compile=False):
    """One draw w = mu + softplus(rho) * eps (eq. 1) and its Monte Carlo KL
    log q(w) - log p(w) (eq. 2 prior), summed over the last dim, in one fused pass.

    :param prior: the univariate prior: :class:`~pyro_bnn.priors.ScaleMixtureNormal` or
        a Normal.
    :param mu: (..., P) means.
    :param rho: (..., P) rhos; sigma = softplus(rho).
    :param eps: (..., P) standard normal noise.
    :param compile: fuse the pass with ``torch.compile`` (one C++ loop on CPU).

    >>> w, kl = fused_kl(ScaleMixtureNormal(), mu, rho, torch.randn_like(mu))  # (K, P), (K,)
    """
    return _FusedKL.apply(mu, rho, eps, _kernels(_univariate(prior), compile))


def stack_loss(
    model: BayesianMLP,
    mu: torch.Tensor,
    rho: torch.Tensor,
    generators: Sequence[torch.Generator],
    x: torch.Tensor,
    y: torch.Tensor,
    num_data: int,
    *,
    compile: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-datapoint negative ELBO of K stacked models on their own minibatches, as
    (mean NLL (K,), Monte Carlo KL (K,) / num_data); the loss is their sum.

    :param model: any one of the K :class:`~pyro_bnn.bnn.BayesianMLP` s (they share it).
    :param mu: (K, P) guide means.
    :param rho: (K, P) guide rhos.
    :param generators: K torch generators; row k's weight noise comes from the k-th.
    :param x: (K, B, D) inputs, one minibatch per model.
    :param y: (K, B) labels.
    :param num_data: the training-set size N.
    :param compile: fuse the weight draw with ``torch.compile``.

    >>> nll, kl = stack_loss(bnn, mu, rho, gens, x, y, 50_000); (nll + kl).sum().backward()
    """
    eps = torch.empty_like(mu)  # (K, P)
    for k, generator in enumerate(generators):
        torch.randn(mu.shape[1], generator=generator, out=eps[k])
    w, kl = _FusedKL.apply(mu, rho, eps, _kernels(_univariate(model.prior), compile))
    logits = model.apply(x, w)  # (K, B, C)
    nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    return nll.view(len(mu), -1).mean(1), kl / num_data


def _univariate(prior) -> dist.Distribution:
    """The i.i.d. univariate prior inside a packed prior, or a ValueError."""
    base = prior
    while isinstance(base, (dist.Independent, torch.distributions.Independent)):
        base = base.base_dist
    if isinstance(base, ScaleMixtureNormal):
        return ScaleMixtureNormal(base.pi, base.sigma1, base.sigma2)
    if isinstance(base, (dist.Normal, torch.distributions.Normal)):
        loc, scale = base.loc.flatten(), base.scale.flatten()
        if bool((loc == loc[0]).all() and (scale == scale[0]).all()):
            return dist.Normal(float(loc[0]), float(scale[0]))
    raise ValueError(
        f"prior must be one ScaleMixtureNormal or Normal for every weight to be stacked, "
        f"got {prior!r}; use fit_svi(..., engine='pyro')"
    )


def stack_problem(model, guide) -> str | None:
    """Why ``(model, guide)`` cannot be trained by :func:`fit_stack`, or None if it can.

    :param model: a :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its guide.

    >>> stack_problem(BayesianMLP(), make_guide("softplus-normal", BayesianMLP()))  # None
    """
    if not isinstance(model, BayesianMLP):
        return f"model must be a BayesianMLP, got {type(model).__name__}"
    if not isinstance(guide, AutoSoftplusNormal):
        return f"guide must be an AutoSoftplusNormal, got {type(guide).__name__}"
    if not isinstance(model.likelihood, Categorical):
        return f"likelihood must be Categorical, got {model.likelihood!r}"
    try:
        _univariate(model.prior)
    except ValueError as err:
        return str(err)
    return None


def _params(guide) -> tuple[torch.Tensor, torch.Tensor]:
    return guide.locs.weights, guide.rhos.weights


@torch.no_grad()
def _load_guide(guide, mu: torch.Tensor, rho: torch.Tensor) -> None:
    for param, value in zip(_params(guide), (mu, rho)):
        param.copy_(value)


@dataclass(eq=False)  # members compare by identity
class _Member:
    """One model of the stack: its own RNG, data order, early stopping and checkpoint."""

    index: int
    model: BayesianMLP
    guide: AutoSoftplusNormal
    seed: int
    checkpoint: str | os.PathLike | None
    config: dict
    generator: torch.Generator
    epoch: int = 0
    best_val: float | None = None
    best_epoch: int = 0
    bad: int = 0
    stopped: bool = False
    wall: float = 0.0
    history: list[dict] = field(default_factory=list)
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    params: tuple[torch.Tensor, torch.Tensor] | None = None  # (mu, rho) rows between stacks
    opt_rows: dict | None = None  # this row's optimiser state between stacks

    def state(self) -> dict:
        return {
            "config": self.config,
            "epoch": self.epoch,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "stopped": self.stopped,
            "wall": self.wall,
            "history": self.history,
            "best": self.best,
            "params": self.params,
            "opt_rows": self.opt_rows,
            "generator": self.generator.get_state(),
        }

    def restore(self, state: dict, max_epochs: int) -> None:
        """Continue from a checkpoint (tensors loaded on the CPU) on the generator's device.

        A checkpoint written on another kind of device (a stack moved from a GPU to a CPU)
        holds a generator state this device cannot take. A finished member needs none; an
        unfinished one draws its further noise from a generator seeded by (seed, epoch),
        with a warning: such a run is not bit-identical to one that never moved."""
        for key in ("epoch", "best_val", "best_epoch", "bad", "stopped", "wall", "history"):
            setattr(self, key, state[key])
        device = self.generator.device
        self.best = tuple(t.to(device) for t in state["best"])
        self.params = tuple(t.to(device) for t in state["params"])
        self.opt_rows = state["opt_rows"]
        if self.stopped or self.epoch >= max_epochs:
            return
        if state["generator"].numel() == self.generator.get_state().numel():
            self.generator.set_state(state["generator"])
        else:
            self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
            warnings.warn(
                f"model {self.index}: the checkpoint's noise generator belongs to another kind "
                f"of device; from epoch {self.epoch + 1} on {device.type}, its weight noise "
                "comes from a generator seeded by (seed, epoch)",
                stacklevel=3,
            )


def _split_state(opt: torch.optim.Optimizer, params, k: int) -> dict:
    """Row k of every per-element optimiser state tensor; other state entries as they are."""
    rows = {}
    for name, p in zip(("mu", "rho"), params):
        rows[name] = {
            key: value[k].clone() if torch.is_tensor(value) and value.shape == p.shape else value
            for key, value in opt.state.get(p, {}).items()
        }
    return rows


def _stacked_optimizer(factory, params, members: list[_Member]) -> torch.optim.Optimizer:
    """An optimiser over the stacked (K, P) params, its state rebuilt from each member's
    rows. A member with no state yet gets zeros, which is how SGD and Adam start; shared
    entries (Adam's step count) must agree."""
    opt = make_optimizer(factory, params)
    stateful = [m for m in members if m.opt_rows and m.opt_rows["mu"]]
    if not stateful:
        return opt
    for name, p in zip(("mu", "rho"), params):
        state = {}
        for key, value in stateful[0].opt_rows[name].items():
            if torch.is_tensor(value) and value.shape == p.shape[1:]:
                rows = [
                    m.opt_rows[name][key] if m in stateful else torch.zeros_like(value)
                    for m in members
                ]
                state[key] = torch.stack(rows).to(p.device)  # (K, P)
            elif any(not _same(m.opt_rows[name][key], value) for m in stateful[1:]):
                raise ValueError(
                    f"optimizer state {key!r} differs between the stacked models; "
                    "stack models that are at the same step"
                )
            else:
                state[key] = value
        opt.state[p] = state
    return opt


def _same(a, b) -> bool:
    return bool((a == b).all()) if torch.is_tensor(a) else a == b


def fit_stack(
    models: Sequence[BayesianMLP],
    guides: Sequence[AutoSoftplusNormal],
    data,
    *,
    val=None,
    seeds: Sequence[int] | None = None,
    optimizer: OptimizerFactory | None = None,
    batch_size: int = 128,
    max_epochs: int = 100,
    patience: int | None = 5,
    callbacks: Sequence[Callback] = (),
    val_samples: int = 10,
    device: str | torch.device = "cpu",
    checkpoints: Sequence[str | os.PathLike | None] | None = None,
    kl_weights: Sequence[float] | None = None,
    train_sigma: Sequence[bool] | None = None,
    compile: bool = False,
    progress: bool = True,
) -> list[FitResult]:
    """Fit K BNNs by SVI in one vectorised step each (Section 2.1, eqs. 3-4); each guide is
    updated in place, to its best epoch, and each gets its own :class:`FitResult`.

    All models share the architecture, the prior and the training data; each has its own
    seed (initial mu, weight noise, minibatch order), early stopping and checkpoint. A
    model that stops leaves the stack; the others go on. Validation scores the mean
    prediction of ``val_samples`` weight samples, as in :func:`~pyro_bnn.train.fit_svi`.

    :param models: K :class:`~pyro_bnn.bnn.BayesianMLP` s of one architecture and prior.
    :param guides: their :class:`~pyro_bnn.guides.AutoSoftplusNormal` guides (any rho_init).
    :param data: (x, y) tensors, a Split or Dataset, or the MNIST splits (in memory).
    :param val: validation data (default: MNIST's val split; none for other forms).
    :param seeds: one seed per model; default 0, 1, ..., K - 1.
    :param optimizer: a factory ``params -> torch optimizer`` with per-element state
        (SGD, Adam, ...); default the paper's SGD.
    :param batch_size: examples per minibatch (128 in the paper).
    :param max_epochs: the most epochs each model runs.
    :param patience: epochs without a better validation score before a model stops; None
        turns early stopping off.
    :param callbacks: called with each model's epoch record (its ``"model"`` is the index
        k), while that model's guide holds the epoch's parameters; True stops that model.
    :param val_samples: weight samples averaged for the validation prediction.
    :param device: where to train.
    :param checkpoints: one file per model (or None) to checkpoint every epoch and resume
        from; a model resumes only under the same config.
    :param kl_weights: one weight per model on its KL term (default 1, the ELBO); 0 trains
        a net with weight noise and no KL, by the likelihood alone.
    :param train_sigma: one flag per model (default True); False holds that model's sigma
        at softplus(rho_init) and trains mu alone.
    :param compile: fuse the weight draw and KL with ``torch.compile`` (needs a C++
        compiler on CPU; about 30% faster per step after ~20 s of compiling).
    :param progress: show a tqdm bar over the stack's epochs.

    >>> bnns = [BayesianMLP() for _ in range(3)]
    >>> guides = [make_guide("softplus-normal", b, rho_init=r) for b, r in zip(bnns, (-3, -5, -30))]
    >>> results = fit_stack(bnns, guides, load_mnist(), seeds=[0, 0, 0], patience=None)
    """
    models, guides = list(models), list(guides)
    if not models or len(models) != len(guides):
        raise ValueError(
            "models and guides must be non-empty and of equal length, "
            f"got {len(models)} and {len(guides)}"
        )
    seeds = list(range(len(models))) if seeds is None else [int(s) for s in seeds]
    checkpoints = [None] * len(models) if checkpoints is None else list(checkpoints)
    kl_weights = [1.0] * len(models) if kl_weights is None else [float(w) for w in kl_weights]
    train_sigma = [True] * len(models) if train_sigma is None else [bool(t) for t in train_sigma]
    for name, values in (("seeds", seeds), ("checkpoints", checkpoints),
                         ("kl_weights", kl_weights), ("train_sigma", train_sigma)):  # fmt: skip
        if len(values) != len(models):
            raise ValueError(f"{name} must have one entry per model ({len(models)})")
    if not all(math.isfinite(w) and w >= 0 for w in kl_weights):
        raise ValueError(f"kl_weights must be finite and >= 0, got {kl_weights}")
    for model, guide in zip(models, guides):
        problem = stack_problem(model, guide)
        if problem:
            raise ValueError(problem)
    first = models[0]
    for model in models[1:]:
        if model.widths != first.widths or model.in_features != first.in_features:
            raise ValueError(f"models must share one arch, got {first.arch} and {model.arch}")
        if repr(model.prior) != repr(first.prior):
            raise ValueError(f"models must share a prior, got {first.prior!r}, {model.prior!r}")
    check_loop(batch_size, max_epochs, patience, callbacks)
    check_positive("val_samples", val_samples, integer=True)
    train, val = training_data(data, val)
    if not isinstance(train, Split):
        raise ValueError("data must be in memory (tensors, a Split or a Dataset) to be stacked")
    for model in models:
        check_split(model, train, "data")
        if val is not None:
            check_split(model, val, "val")
    device = check_device(device)
    if val is not None:
        val = val.to(device)
    x_all, y_all = train.x.to(device), train.y.to(device)
    n = len(y_all)

    members = []
    for index, (model, guide, seed, ckpt, kl_weight, sigma_trains) in enumerate(
        zip(models, guides, seeds, checkpoints, kl_weights, train_sigma)
    ):
        pyro.set_rng_seed(seed)  # the initial mu, exactly as fit_svi draws it
        init_guide(model, guide)
        model.to(device)
        guide.to(device)
        probe = make_optimizer(optimizer, [torch.zeros(1, requires_grad=True)])
        config = {
            "engine": "stack",
            "model": repr(model.net),
            "prior": repr(model.prior),
            "likelihood": repr(model.likelihood),
            "guide": type(guide).__name__,
            "rho_init": guide.rho_init,
            "optimizer": optimizer_config(probe),
            "batch_size": batch_size,
            "max_epochs": max_epochs,
            "patience": patience,
            "val_samples": val_samples,
            "seed": seed,
        }
        if kl_weight != 1.0:  # absent by default: older checkpoints keep their config
            config["kl_weight"] = kl_weight
        if not sigma_trains:
            config["train_sigma"] = False
        generator = torch.Generator(device=device).manual_seed(seed)
        member = _Member(index, model, guide, seed, ckpt, config, generator)
        state = load_checkpoint(ckpt) if ckpt else None
        if state is not None and state.get("config") == config:
            member.restore(state, max_epochs)
        else:
            mu, rho = _params(guide)
            member.params = (mu.detach().clone(), rho.detach().clone())
        members.append(member)

    def finished(m: _Member) -> bool:
        return m.stopped or m.epoch >= max_epochs

    total = max(max_epochs - min(m.epoch for m in members), 0)
    desc = f"SVI stack of {len(members)} {first.arch}"
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="epoch", dynamic_ncols=True)
    key = "val_acc"
    active: list[_Member] = []
    mu = rho = opt = None
    while True:
        now = [m for m in members if not finished(m)]
        if not now:
            break
        if now != active:  # (re)build the stack from its members' rows
            for k, m in enumerate(active):
                m.params = (mu[k].detach().clone(), rho[k].detach().clone())
                m.opt_rows = _split_state(opt, (mu, rho), k)
            active = now
            mu = torch.stack([m.params[0] for m in active]).requires_grad_()  # (K, P)
            rho = torch.stack([m.params[1] for m in active]).requires_grad_()  # (K, P)
            opt = _stacked_optimizer(optimizer, [mu, rho], active)
            weight = torch.tensor([m.config.get("kl_weight", 1.0) for m in active], device=device)
            held = [k for k, m in enumerate(active) if not m.config.get("train_sigma", True)]
            held_rho = rho.detach()[held].clone()  # (K_held, P) rows whose sigma stays
        start = time.perf_counter()
        # each model's own minibatch order for its own epoch: (K, n) indices
        order = torch.stack([epoch_order(n, m.seed, m.epoch) for m in active]).to(device)
        gens = [m.generator for m in active]
        sums = torch.zeros(len(active), 2, device=device)
        steps = 0
        for i in range(0, n, batch_size):
            idx = order[:, i : i + batch_size]  # (K, B)
            opt.zero_grad(set_to_none=True)
            nll, kl = stack_loss(first, mu, rho, gens, x_all[idx], y_all[idx], n, compile=compile)
            (nll + weight * kl).sum().backward()  # per datapoint, as DatapointELBO
            opt.step()
            if held:
                with torch.no_grad():
                    rho[held] = held_rho
            sums += torch.stack([nll.detach(), kl.detach()], 1)
            steps += 1
        means = (sums / steps).tolist()  # waits for the device's queue
        elapsed = (time.perf_counter() - start) / len(active)
        for k, m in enumerate(active):
            nll_k, kl_k = means[k]
            objective = -(nll_k + m.config.get("kl_weight", 1.0) * kl_k)
            record = {"epoch": m.epoch + 1, "elbo": objective, "nll": nll_k, "kl": kl_k}
            if val is not None:
                with torch.no_grad():
                    noise = torch.randn(
                        val_samples, mu.shape[1], generator=m.generator, device=device
                    )
                    draws = mu[k].detach() + F.softplus(rho[k].detach()) * noise  # (S, P)
                    probs = predictive(m.model, draws, val.x).mean(0)  # (N, C)
                record["val_acc"] = float((probs.argmax(-1) == val.y).double().mean())
            if not all(math.isfinite(v) for v in record.values()):
                raise FloatingPointError(f"model {k} diverged at epoch {m.epoch + 1}: {record}")
            m.history.append(record)
            if val is None or m.best_val is None or record[key] > m.best_val:
                m.best_val = None if val is None else record[key]
                m.best_epoch = m.epoch + 1
                m.bad = 0
                m.best = (mu[k].detach().clone(), rho[k].detach().clone())
            else:
                m.bad += 1
            if callbacks:  # the guide holds this epoch's parameters while they run
                _load_guide(m.guide, mu[k], rho[k])
            stop = [bool(cb({"model": m.index, **record})) for cb in callbacks]
            patient = patience is None or val is None or m.bad < patience
            m.stopped = any(stop) or not patient
            m.epoch += 1
            m.wall += elapsed
            if m.checkpoint:
                m.params = (mu[k].detach().clone(), rho[k].detach().clone())
                m.opt_rows = _split_state(opt, (mu, rho), k)
                save_checkpoint(m.checkpoint, m.state())
        bar.update(1)
        shown = {f"m{m.index}": m.history[-1].get(key, m.history[-1]["elbo"]) for m in active}
        bar.set_postfix({k: f"{v:.4f}" for k, v in list(shown.items())[:4]})
    bar.close()
    results = []
    for m in members:
        _load_guide(m.guide, *m.best)
        results.append(
            FitResult(
                epochs=m.epoch,
                best_epoch=m.best_epoch,
                best_val=m.best_val,
                monitor=key if val is not None else None,
                stopped_early=m.stopped,
                wall_time_s=round(m.wall, 2),
                history=m.history,
            )
        )
    return results
