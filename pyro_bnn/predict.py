"""Posterior predictive of a BNN: (S, N, C) probabilities (or Gaussian (loc, scale)) from S
weight samples.

Weights come from the guide in one vectorised draw (:func:`sample_posterior`); the forward
pass then runs all S samples at once, chunked over N to bound memory.
The three decision rules the harness scores are prob functions (x -> probs):

- :func:`single_sample_fn`: each run is one weight sample (Section 3.2; Tables 1 and 2);
- :func:`ensemble_fn`: each run averages the probabilities of ``size`` samples (Section 5,
  eq. 7; Table 3);
- :func:`mean_fn`: the posterior-mean network.

:func:`dropout_sampler` gives a plain net with dropout layers the same form (MC dropout,
Gal & Ghahramani 2016), so it is scored and attacked as a BNN is.

:func:`sampler` gives the same rules as ``fn(x, k) -> (k, N, C)``, differentiable in x, for
white-box (EOT) attacks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from torch import nn

from .bnn import BNN, BayesianMLP, init_guide, local_params

__all__ = [
    "dropout_sampler",
    "ensemble_fn",
    "mean_fn",
    "posterior_mean",
    "predictive",
    "predictive_interval",
    "predictive_probs",
    "sample_posterior",
    "sample_weights",
    "sampler",
    "single_sample_fn",
]

MAX_ELEMENTS = 2**24  # per chunk: S * N_chunk * widest layer (64 MB of float32)


def _device(guide) -> torch.device:
    """Where the guide keeps its parameters (or, for posterior samples, its buffers)."""
    return next(itertools.chain(guide.parameters(), guide.buffers()), torch.empty(0)).device


def sample_posterior(model: BNN, guide, num_samples: int) -> dict[str, torch.Tensor]:
    """Every latent site drawn from the guide in one vectorised draw: {'weights': (S, P),
    ...} (a learned noise scale adds 'log_scale' (S,)).

    The guide runs under a plate of S draws, as ``pyro.infer.Predictive(parallel=True)``
    runs it, but the model is not run: its sites would only copy the guide's, and its
    three traces (prior draws of every weight) cost several forward passes.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.
    :param num_samples: S >= 1.

    >>> samples = sample_posterior(bnn, guide, 100)  # {'weights': (100, P)}
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    init_guide(model, guide)
    device = _device(guide)
    # the guide's plates (an autoguide's data plate) are sized by the model's input
    args = () if model.input_shape is None else (model.example_input(1, device),)
    with torch.no_grad(), local_params(model, guide), poutine.block():
        # an autoguide's sites sit in the plates of its model's (prototype) sites
        prototype = getattr(guide, "prototype_trace", None)
        if prototype is None:  # stored draws, or MC dropout's
            prototype = poutine.trace(guide).get_trace(*args)
        sites = _latents(prototype)
        nesting = max((-f.dim for s in sites for f in s["cond_indep_stack"] if f.vectorized),
                      default=0)  # fmt: skip
        with pyro.plate("_num_predictive_samples", num_samples, dim=-nesting - 1):
            drawn = _latents(poutine.trace(guide).get_trace(*args))
    # a site of batch shape B is (S, *B, *event); inside a plate of dim -d it is padded to
    # (S, 1, ..., *event): drop the plates' singletons
    out = {}
    for site in drawn:
        value = site["value"]
        for _ in range(nesting - len(site["fn"].batch_shape)):
            value = value.squeeze(1)
        out[site["name"]] = value
    return out


def _latents(trace) -> list[dict]:
    """The guide's latent sample sites (not its auxiliary ones, e.g. MC dropout's masks)."""
    return [
        site for site in trace.nodes.values()
        if site["type"] == "sample" and not site["is_observed"]
        and not site["infer"].get("is_auxiliary")
    ]  # fmt: skip


def sample_weights(model: BNN, guide, num_samples: int) -> torch.Tensor:
    """Draw weight vectors from the guide: (S, P).

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.
    :param num_samples: S >= 1.

    >>> weights = sample_weights(bnn, guide, 100)
    """
    weights = sample_posterior(model, guide, num_samples)["weights"]
    return weights.reshape(num_samples, model.num_params)


def posterior_mean(model: BNN, guide) -> torch.Tensor:
    """The guide's posterior mean (its median for Normal guides) of the weights: (P,).

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.

    >>> mu = posterior_mean(bnn, guide)  # (P,)
    """
    init_guide(model, guide)
    with local_params(model, guide):
        return guide.median()["weights"].detach().reshape(model.num_params)


def _weights(model: BNN, weights) -> tuple[torch.Tensor, dict]:
    """(S, P) weights and the likelihood's latents from a tensor or a sample dict."""
    latents = {}
    if isinstance(weights, dict):
        latents = {k: v for k, v in weights.items() if k != "weights"}
        weights = weights["weights"]
    if not isinstance(weights, torch.Tensor):
        raise ValueError(f"weights must be a tensor (S, P), got {type(weights).__name__}")
    if weights.dim() == 3 and weights.shape[1] == 1:  # (S, 1, P), as Predictive returns
        weights = weights.squeeze(1)
    if weights.dim() != 2 or weights.shape[-1] != model.num_params or len(weights) == 0:
        raise ValueError(
            f"weights must be (S, {model.num_params}) with S >= 1, got {tuple(weights.shape)}"
        )
    return weights, latents


def _chunk(model: BNN, s: int) -> int:
    """Inputs per chunk so that S samples' widest activations stay near MAX_ELEMENTS: an
    MLP's widest layer, else a guess of 8 activations per input element."""
    if isinstance(model, BayesianMLP):
        per_example = max(model.widths)
    else:
        per_example = 8 * math.prod(model.input_shape or (1,))
    return max(1, MAX_ELEMENTS // (s * per_example))


def predictive(model: BNN, weights, x: torch.Tensor):
    """Per-sample predictions: the likelihood's :meth:`predict` of the net's output.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param weights: (S, P) (or (S, 1, P) as ``Predictive`` returns), or the dict of
        :func:`sample_posterior`.
    :param x: (N, ...) inputs.
    :returns: classifiers: probabilities (S, N, C); Gaussian: (loc, scale), each (S, N).

    Runs the S samples in one batched pass per chunk of inputs; keeps autograd for x if it
    requires grad.

    >>> loc, scale = predictive(bnn, sample_posterior(bnn, guide, 100), x)  # regression
    """
    weights, latents = _weights(model, weights)
    model.check_x(x)
    if len(x) == 0:
        raise ValueError("x is empty: pass at least one input")
    chunk = _chunk(model, weights.shape[0])
    parts = [
        model.likelihood.predict(model.apply(x[i : i + chunk], weights), latents)
        for i in range(0, len(x), chunk)
    ]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(p, dim=-1) for p in zip(*parts))  # (S, N) each
    return torch.cat(parts, dim=-2)  # (S, N, C)


def predictive_interval(
    model: BNN, weights, x: torch.Tensor, level: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The central ``level`` interval of the posterior predictive of y (not of the net's
    mean f): the equal mixture over the S weight samples of N(loc_s(x), scale_s(x)^2), so
    it holds both the weight uncertainty and the observation noise. The bounds are the
    mixture's exact quantiles, found by bisection on its CDF.

    :param model: a regression :class:`~pyro_bnn.bnn.BNN` (a Gaussian likelihood).
    :param weights: (S, P) weights, or the dict of :func:`sample_posterior` (with a learned
        noise scale it must hold ``log_scale``).
    :param x: (N, ...) inputs.
    :param level: the interval's probability, in (0, 1).
    :returns: (mean, lower, upper), each (N,): the predictive mean and the bounds.

    >>> mean, lower, upper = predictive_interval(bnn, sample_posterior(bnn, guide, 500), x)
    >>> coverage = ((lower <= y) & (y <= upper)).float().mean()
    """
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    with torch.no_grad():
        out = predictive(model, weights, x)
        if not isinstance(out, tuple):
            raise ValueError("predictive_interval needs a regression BNN (a Gaussian likelihood)")
        loc, scale = (t.double() for t in out)  # (S, N) each
        normal = torch.distributions.Normal(loc, scale)

        def quantile(q: float) -> torch.Tensor:
            lo = (loc - 10 * scale).min(0).values  # (N,): the mixture's CDF is ~0 here ...
            hi = (loc + 10 * scale).max(0).values  # ... and ~1 here
            for _ in range(60):  # halves the bracket each step: 2^-60 of its width
                mid = (lo + hi) / 2
                below = normal.cdf(mid).mean(0) < q
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
            return ((lo + hi) / 2).to(out[0].dtype)

        tail = (1 - level) / 2
        return loc.mean(0).to(out[0].dtype), quantile(tail), quantile(1 - tail)


def predictive_probs(model: BNN, weights, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities for every weight sample: weights (S, P), x (N, ...) -> (S, N, C).

    :param model: a classifier :class:`~pyro_bnn.bnn.BNN`.
    :param weights: (S, P), or a dict from :func:`sample_posterior`.
    :param x: (N, ...) inputs, e.g. (N, 784) on the /126 pixel scale.

    >>> probs = predictive_probs(bnn, sample_weights(bnn, guide, 100), x)  # (100, N, 10)
    """
    probs = predictive(model, weights, x)
    if isinstance(probs, tuple):
        raise ValueError("predictive_probs needs a classifier; use predictive() for regression")
    return probs


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sampler(
    model: BNN, guide, ensemble: int = 1, log: bool = False
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``fn(x, k) -> (k, N, C)``: k fresh draws of the decision rule, each the mean of
    ``ensemble`` weight samples' probabilities (eq. 7; 1 = a single sample). Differentiable
    in x.

    :param model: a classifier :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.
    :param ensemble: weight samples averaged per draw, N of eq. 7.
    :param log: return the log of each mean probability, by logsumexp over the samples'
        log-softmax, so that it never underflows (valid logits for an attack's loss).

    >>> probs = sampler(bnn, guide, ensemble=10)(x, 20)  # (20, N, C), for EOT attacks
    >>> logp = sampler(bnn, guide, log=True)(x, 20)  # (20, N, C), finite everywhere
    """
    _check_counts(ensemble=ensemble)

    def draw(x: torch.Tensor, k: int) -> torch.Tensor:
        _check_counts(k=k)
        weights = sample_weights(model, guide, k * ensemble)  # (k * ensemble, P)
        if log:
            model.check_x(x)
            logp = model.apply(x, weights).log_softmax(-1)  # (k * ensemble, N, C)
            logp = logp.view(k, ensemble, *logp.shape[1:])
            return logp.logsumexp(1) - math.log(ensemble)
        probs = predictive_probs(model, weights, x)
        return probs.view(k, ensemble, *probs.shape[1:]).mean(1)

    return draw


def single_sample_fn(model: BNN, guide, runs: int = 100) -> Callable:
    """x -> (runs, N, C): each run uses one fresh weight sample for all of x (Section 3.2).

    :param model: a classifier :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.
    :param runs: independent single-sample predictions (the paper averages 100).

    >>> evaluate(single_sample_fn(bnn, guide, runs=100), data.test.x, data.test.y)["acc"]
    """
    _check_counts(runs=runs)
    draw = sampler(model, guide, 1)
    return torch.no_grad()(lambda x: draw(x, runs))


def ensemble_fn(model: BNN, guide, size: int, runs: int | None = None) -> Callable:
    """x -> (runs, N, C): each run is the ensemble prediction of eq. 7 (Section 5), the
    mean probabilities of ``size`` fresh weight samples.

    :param model: a classifier :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.
    :param size: N of eq. 7, weight samples per prediction.
    :param runs: independent ensemble predictions; default max(1, 100 // size), the
        paper's Table 3 protocol.

    >>> probs = ensemble_fn(bnn, guide, size=100)(data.test.x)  # (1, 10000, 10)
    """
    _check_counts(size=size)
    runs = max(1, 100 // size) if runs is None else runs
    _check_counts(runs=runs)
    draw = sampler(model, guide, size)
    return torch.no_grad()(lambda x: draw(x, runs))


def mean_fn(model: BNN, guide) -> Callable:
    """x -> (N, C): the network with every weight at its posterior mean.

    :param model: a classifier :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted guide.

    >>> probs = mean_fn(bnn, guide)(data.test.x)  # (10000, 10)
    """
    weights = posterior_mean(model, guide).unsqueeze(0)

    @torch.no_grad()
    def probs(x: torch.Tensor) -> torch.Tensor:
        return predictive_probs(model, weights, x)[0]

    return probs


@contextlib.contextmanager
def _dropout_on(net: nn.Module):
    """Every dropout layer of ``net`` in training mode (masks drawn), the rest as they are."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    modes = [m.training for m in layers]
    for m in layers:
        m.train()
    try:
        yield
    finally:
        for m, mode in zip(layers, modes):
            m.train(mode)


def dropout_sampler(
    net: nn.Module, ensemble: int = 1, log: bool = False
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """MC dropout as a decision rule, ``fn(x, k) -> (k, N, C)``: k fresh draws, each the mean
    probabilities of ``ensemble`` passes of ``net`` with fresh dropout masks (its other
    layers stay in the mode they are in). Differentiable in x, as :func:`sampler` is.

    :param net: a torch classifier x -> logits (N, C) with dropout layers.
    :param ensemble: passes averaged per draw.
    :param log: return the log of each mean probability, by logsumexp, as :func:`sampler`.

    >>> draw = dropout_sampler(net, ensemble=10)
    >>> evaluate(lambda x: draw(x, 20), data.test.x, data.test.y)["acc"]
    """
    _check_counts(ensemble=ensemble)
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in net.modules()):
        raise ValueError(f"net has no dropout layer to sample: {type(net).__name__}")

    def draw(x: torch.Tensor, k: int) -> torch.Tensor:
        _check_counts(k=k)
        with _dropout_on(net):
            xs = x.unsqueeze(0).expand(k * ensemble, *x.shape).reshape(-1, *x.shape[1:])
            logp = (
                net(xs).log_softmax(-1).view(k, ensemble, len(x), -1)
            )  # (k E N, C) -> (k, E, N, C)
        if log:
            return logp.logsumexp(1) - math.log(ensemble)
        return logp.exp().mean(1)

    return draw
