"""Posterior predictive of a BayesianMLP: (S, N, C) probabilities from S weight samples.

Weights come from the guide through Pyro's ``Predictive(parallel=True)`` in one vectorised
draw; the forward pass then runs all S samples at once, chunked over N to bound memory.
The three decision rules the harness scores are prob functions (x -> probs):

- :func:`single_sample_fn`: each run is one weight sample (the paper's Tables 1 and 2);
- :func:`ensemble_fn`: each run averages the probabilities of ``size`` samples (Table 3);
- :func:`mean_fn`: the posterior-mean network.

:func:`sampler` gives the same rules as ``fn(x, k) -> (k, N, C)``, differentiable in x, for
white-box (EOT) attacks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro.infer import Predictive

from .bnn import BayesianMLP, check_inputs, init_guide

__all__ = [
    "ensemble_fn",
    "mean_fn",
    "posterior_mean",
    "predictive_probs",
    "sample_weights",
    "sampler",
    "single_sample_fn",
]

MAX_ELEMENTS = 2**24  # per chunk: S * N_chunk * widest layer (64 MB of float32)


def sample_weights(
    model: BayesianMLP, guide, num_samples: int, *, parallel: bool = True
) -> torch.Tensor:
    """Draw weight vectors from the guide with ``pyro.infer.Predictive``: (S, P)."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    init_guide(model, guide)
    device = next(guide.parameters()).device
    x = torch.zeros(1, model.in_features, device=device)
    predictive = Predictive(
        model, guide=guide, num_samples=num_samples, parallel=parallel, return_sites=("weights",)
    )
    with torch.no_grad():
        weights = predictive(x)["weights"]
    return weights.reshape(num_samples, model.num_params)


def posterior_mean(model: BayesianMLP, guide) -> torch.Tensor:
    """The guide's posterior mean (its median for Normal guides) of the weights: (P,)."""
    init_guide(model, guide)
    x = torch.zeros(1, model.in_features, device=next(guide.parameters()).device)
    return guide.median(x)["weights"].detach().reshape(model.num_params)


def predictive_probs(model: BayesianMLP, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Softmax outputs for every weight sample: weights (S, P), x (N, D) -> (S, N, C).

    Runs the S samples in one batched pass per chunk of inputs; keeps autograd for x if it
    requires grad.
    """
    if weights.dim() != 2:
        raise ValueError(f"weights must be (S, P), got {tuple(weights.shape)}")
    chunk = max(1, MAX_ELEMENTS // (weights.shape[0] * max(model.widths)))
    probs = torch.cat(
        [model.logits(x[i : i + chunk], weights).softmax(-1) for i in range(0, len(x), chunk)],
        dim=-2,
    )
    assert probs.shape == (weights.shape[0], len(x), model.widths[-1])
    return probs


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def sampler(
    model: BayesianMLP, guide, ensemble: int = 1
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``fn(x, k) -> (k, N, C)``: k fresh draws of the decision rule, each the mean of
    ``ensemble`` weight samples (1 = a single sample). Differentiable in x."""
    _check_counts(ensemble=ensemble)

    def draw(x: torch.Tensor, k: int) -> torch.Tensor:
        _check_counts(k=k)
        check_inputs(x, in_features=model.in_features)
        probs = predictive_probs(model, sample_weights(model, guide, k * ensemble), x)
        return probs.view(k, ensemble, *probs.shape[1:]).mean(1)

    return draw


def single_sample_fn(model: BayesianMLP, guide, runs: int = 100) -> Callable:
    """x -> (runs, N, C): each run uses one fresh weight sample for all of x."""
    _check_counts(runs=runs)
    draw = sampler(model, guide, 1)
    return torch.no_grad()(lambda x: draw(x, runs))


def ensemble_fn(model: BayesianMLP, guide, size: int, runs: int | None = None) -> Callable:
    """x -> (runs, N, C): each run averages the probabilities of ``size`` fresh samples.

    ``runs`` defaults to max(1, 100 // size), the paper's Table 3 protocol.
    """
    _check_counts(size=size)
    runs = max(1, 100 // size) if runs is None else runs
    _check_counts(runs=runs)
    draw = sampler(model, guide, size)
    return torch.no_grad()(lambda x: draw(x, runs))


def mean_fn(model: BayesianMLP, guide) -> Callable:
    """x -> (N, C): the network with every weight at its posterior mean."""
    weights = posterior_mean(model, guide).unsqueeze(0)

    @torch.no_grad()
    def probs(x: torch.Tensor) -> torch.Tensor:
        check_inputs(x, in_features=model.in_features)
        return predictive_probs(model, weights, x)[0]

    return probs
