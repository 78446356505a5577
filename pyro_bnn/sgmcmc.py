"""Cyclical stochastic-gradient HMC (cSGHMC; Zhang et al. 2020, "Cyclical Stochastic
Gradient MCMC for Bayesian Deep Learning"): posterior samples of a BNN from minibatch
gradients, for nets where full-data HMC (:mod:`pyro_bnn.mcmc`) is too slow.

Each of ``num_cycles`` cycles starts the step size afresh at ``lr`` and lowers it along a
cosine to 0. In a cycle's first part the sampler only explores (SGD with momentum, no
noise); in its last ``sample_fraction`` it adds the SGHMC noise and keeps the weights at
the end of every epoch. With ``noise_fraction`` the noise starts earlier (1: throughout), so
that the weights the data barely constrain are not shrunk towards 0 by the noiseless part.
The draws come back as a :class:`~pyro_bnn.mcmc.PosteriorSamples` guide.

One step size serves every weight, so a weight the data pin down (posterior sd 0.01) and
one they leave at the prior (sd 1) cannot both move at their own pace: the loose ones take
10^4 times the steps to spread. ``scale`` (a fixed diagonal preconditioner, about each
weight's posterior sd; :func:`fisher_scale` gives one) runs the sampler in w / scale,
where both move alike.

>>> guide, result = fit_csghmc(bnn, load_mnist(), num_cycles=4, epochs_per_cycle=50)
>>> rule = ensemble_fn(bnn, guide, size=100)  # each prediction: 100 draws, with replacement
>>> scale = fisher_scale(bnn, load_mnist(), map_estimate(bnn, load_mnist()))
>>> guide, result = fit_csghmc(bnn, load_mnist(), scale=scale, lr=10.0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from tqdm.auto import tqdm

from .bnn import BNN
from .fitting import check_positive
from .mcmc import PosteriorSamples, check_weights_only, in_memory
from .train import minibatches

__all__ = ["SGMCMCResult", "fisher_scale", "fit_csghmc"]


@dataclass
class SGMCMCResult:
    """What :func:`fit_csghmc` ran and kept.

    :param samples: ``{site: (draws, *shape)}``, every cycle's draws in order.
    :param cycle: (draws,) the cycle each draw came from.
    :param wall_time_s: seconds.
    :param settings: the schedule and the sampler's constants.

    >>> guide, result = fit_csghmc(bnn, (x, y))
    >>> result.samples["weights"].shape, result.cycle
    """

    samples: dict[str, torch.Tensor]
    cycle: torch.Tensor
    wall_time_s: float
    settings: dict = field(default_factory=dict)


def _latent_sites(model: BNN) -> dict[str, torch.Tensor]:
    """A prior draw of every latent site (the model without data draws only those). A
    BNN's priors are on the real line (pyro_bnn.priors), so the sampler needs no transform."""
    with torch.no_grad():
        trace = poutine.trace(model).get_trace()
    return {name: trace.nodes[name]["value"].detach().clone() for name in trace.stochastic_nodes}


def fisher_scale(
    model: BNN,
    data,
    weights: torch.Tensor,
    *,
    chunk_size: int = 1000,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(P,) the sd of a diagonal Laplace approximation of p(w | D) at ``weights``, with the
    empirical Fisher for the data's curvature: (sum_n g_n^2 + 1 / Var[prior])^(-1/2), g_n
    the gradient of -log p(y_n | x_n, w). The preconditioner of :func:`fit_csghmc`; where no
    datum reaches a weight it is the prior's sd.

    :param model: a :class:`~pyro_bnn.bnn.BNN` whose only latent site is its weights.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param weights: (P,) where to measure the curvature, e.g. the MAP
        (:func:`~pyro_bnn.mcmc.map_estimate`).
    :param chunk_size: examples per batch of per-example gradients (memory: P x chunk_size).
    :param device: where it runs.

    >>> scale = fisher_scale(bnn, load_mnist(), map_estimate(bnn, load_mnist()))
    """
    check_positive("chunk_size", chunk_size, integer=True)
    check_weights_only(model, "fisher_scale")
    if weights.shape != (model.num_params,):
        raise ValueError(
            f"weights must have shape ({model.num_params},), got {tuple(weights.shape)}"
        )
    train = in_memory(model, data, device)
    w = weights.detach().to(train.x.device, model.dtype)

    def nll(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = model.apply(x[None], w)  # (1, K): one example
        return -model.likelihood.distribution(out, {}).log_prob(y[None]).sum()

    per_example = torch.func.vmap(torch.func.grad(nll), in_dims=(None, 0, 0))
    fisher = torch.zeros_like(w, dtype=torch.float64)  # (P,)
    with pyro.validation_enabled(False):  # no data-dependent checks under vmap
        for start in range(0, len(train.x), chunk_size):
            xs, ys = train.x[start : start + chunk_size], train.y[start : start + chunk_size]
            fisher += per_example(w, xs, ys).double().square().sum(0)  # (chunk, P) -> (P,)
    precision = fisher + 1 / model.prior.variance.to(fisher.device).double()
    return precision.rsqrt().to(model.dtype)


def fit_csghmc(
    model: BNN,
    data,
    *,
    num_cycles: int = 4,
    epochs_per_cycle: int = 50,
    sample_fraction: float = 0.1,
    noise_fraction: float | None = None,
    lr: float = 0.5,
    friction: float = 0.1,
    temperature: float = 1.0,
    scale: torch.Tensor | dict[str, torch.Tensor] | None = None,
    init: torch.Tensor | dict[str, torch.Tensor] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[PosteriorSamples, SGMCMCResult]:
    """Sample p(w | D) by cSGHMC from minibatches.

    With u(w) = -(log p(w) + (N / n) sum_batch log p(y | x, w)) / N, the minibatch
    estimate of the negative log posterior per datapoint, and s the ``scale``, each step is

        v <- (1 - friction) v - lr_t s^2 grad u(w) + s sqrt(2 friction lr_t temperature / N) xi
        w <- w + v

    with xi ~ N(0, I) only in the sampling part of a cycle, and
    lr_t = lr (cos(pi t / T) + 1) / 2 over the T steps of a cycle (Zhang et al. 2020,
    Algorithm 1 with SGHMC; their code's parametrisation). With s = 1 this is their
    sampler; otherwise it is theirs run on w / s, which has the same stationary
    distribution (a fixed mass matrix diag(s^-2)).

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param num_cycles: cycles of the step size, each ending in draws.
    :param epochs_per_cycle: epochs (passes over the data) per cycle.
    :param sample_fraction: the last part of each cycle that keeps draws.
    :param noise_fraction: the last part of each cycle that adds noise, at least
        ``sample_fraction``; None: ``sample_fraction`` (Zhang et al.). 1 keeps the noise on
        throughout, so that directions the data barely constrain never collapse to 0 in
        the noiseless part.
    :param lr: the step size at the start of each cycle.
    :param friction: the momentum's decay per step, alpha.
    :param temperature: 1 samples the posterior; below 1 a cold one.
    :param scale: a fixed diagonal preconditioner, about each coordinate's posterior sd:
        ``{site: tensor broadcastable to it}``, or a tensor for a BNN's ``weights``
        (:func:`fisher_scale`; or the square root of :func:`~pyro_bnn.mcmc.laplace`'s
        diagonal). ``lr`` is then on the scale of w / s, where 1 is a posterior sd.
        None: 1 everywhere.
    :param init: where the chain starts, ``{site: tensor of its shape}`` or a tensor for a
        BNN's ``weights`` (e.g. the MAP); None: a draw from the prior (Zhang et al.).
    :param batch_size: examples per minibatch.
    :param seed: seeds the prior draw that starts the chain, the noise and the batches.
    :param device: where it runs.
    :param progress: show a tqdm bar.
    :returns: (guide of every draw, :class:`SGMCMCResult`).

    >>> guide, result = fit_csghmc(bnn, load_mnist(), num_cycles=4, epochs_per_cycle=50)
    """
    for name, value in (("num_cycles", num_cycles), ("epochs_per_cycle", epochs_per_cycle),
                        ("batch_size", batch_size)):  # fmt: skip
        check_positive(name, value, integer=True)
    for name, value in (("lr", lr), ("temperature", temperature)):
        check_positive(name, value)
    noise_fraction = sample_fraction if noise_fraction is None else noise_fraction
    for name, value in (("sample_fraction", sample_fraction), ("noise_fraction", noise_fraction),
                        ("friction", friction)):  # fmt: skip
        if not 0 < value <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    if noise_fraction < sample_fraction:
        raise ValueError(
            f"noise_fraction must be at least sample_fraction ({sample_fraction}), got "
            f"{noise_fraction!r}: a draw needs the noise"
        )
    train = in_memory(model, data, device)
    device, n = train.x.device, len(train)
    pyro.set_rng_seed(seed)
    state = _start(init, _latent_sites(model), device)
    for value in state.values():
        value.requires_grad_(True)
    scales = _scales(scale, state)
    velocity = {name: torch.zeros_like(value) for name, value in state.items()}
    steps_per_epoch = math.ceil(n / batch_size)
    cycle_steps = epochs_per_cycle * steps_per_epoch
    # the first kept (noisy) epoch: the last round(fraction * epochs) of a cycle, at least 1
    sampling_from = epochs_per_cycle - max(1, round(sample_fraction * epochs_per_cycle))
    noise_from = min(sampling_from, epochs_per_cycle - round(noise_fraction * epochs_per_cycle))
    batches = minibatches(train, batch_size, seed, device)
    draws, cycles = [], []
    start = time.perf_counter()
    total = num_cycles * epochs_per_cycle
    for epoch in tqdm(range(total), desc="cSGHMC", disable=not progress, unit="epoch"):
        in_cycle = epoch % epochs_per_cycle
        noisy, keep = in_cycle >= noise_from, in_cycle >= sampling_from
        for i, (x, y) in enumerate(batches(epoch)):
            t = in_cycle * steps_per_epoch + i
            step = lr * (math.cos(math.pi * t / cycle_steps) + 1) / 2
            conditioned = poutine.condition(model, data=state)
            u = -poutine.trace(conditioned).get_trace(x, y, num_data=n).log_prob_sum() / n
            grads = torch.autograd.grad(u, list(state.values()))
            with torch.no_grad():
                for (name, value), grad in zip(state.items(), grads):
                    s = scales[name]  # None: 1
                    drift = grad if s is None else grad * s.square()
                    v = velocity[name].mul_(1 - friction).add_(drift, alpha=-step)
                    if noisy:
                        xi = torch.randn_like(v)
                        v.add_(xi if s is None else xi * s,
                               alpha=math.sqrt(2 * friction * step * temperature / n))  # fmt: skip
                    value.add_(v)
        if keep:
            draws.append({name: value.detach().clone() for name, value in state.items()})
            cycles.append(epoch // epochs_per_cycle)
    samples = {name: torch.stack([d[name] for d in draws]) for name in state}
    settings = {"num_cycles": num_cycles, "epochs_per_cycle": epochs_per_cycle,
                "sample_fraction": sample_fraction, "noise_fraction": noise_fraction,
                "lr": lr, "friction": friction, "temperature": temperature,
                "preconditioned": scale is not None, "start": "prior" if init is None else "init",
                "batch_size": batch_size, "n_data": n}  # fmt: skip
    result = SGMCMCResult(samples, torch.tensor(cycles),
                          round(time.perf_counter() - start, 2), settings)  # fmt: skip
    return PosteriorSamples(samples), result


def _start(init, prior_draw: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """The chain's first state: ``init`` where given, the prior draw elsewhere; ValueError
    naming a site the model does not sample or a value of the wrong shape."""
    init = {} if init is None else {"weights": init} if isinstance(init, torch.Tensor) else init
    unknown = sorted(set(init) - set(prior_draw))
    if unknown:
        raise ValueError(f"init names sites the model does not sample: {unknown}")
    state = {}
    for name, value in prior_draw.items():
        start = init.get(name, value)
        if tuple(start.shape) != tuple(value.shape):
            raise ValueError(
                f"init[{name!r}] must have shape {tuple(value.shape)}, got {tuple(start.shape)}"
            )
        state[name] = start.detach().to(device, value.dtype).clone()
    return state


def _scales(scale, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """``scale`` as {site: tensor of the site's shape}, None (1) where none is given;
    ValueError naming the site whose scale is not positive, finite and broadcastable."""
    if scale is None:
        scale = {}
    elif isinstance(scale, torch.Tensor):
        scale = {"weights": scale}
    unknown = sorted(set(scale) - set(state))
    if unknown:
        raise ValueError(f"scale names sites the model does not sample: {unknown}")
    out = {}
    for name, value in state.items():
        s = scale.get(name)
        if s is None:
            out[name] = None
            continue
        s = torch.as_tensor(s).detach().to(value.device, value.dtype)
        if not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"scale[{name!r}] must be finite and > 0 everywhere")
        try:
            out[name] = s.expand(value.shape).clone()
        except RuntimeError:
            raise ValueError(
                f"scale[{name!r}] has shape {tuple(s.shape)}, which does not broadcast to "
                f"the site's {tuple(value.shape)}"
            ) from None
    return out
