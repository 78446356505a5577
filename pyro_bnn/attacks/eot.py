"""The white-box EOT attack on a stochastic model (Athalye et al. 2018): the minimum-norm
attack on k draws of the model per step, each step judged on k fresh draws (not the ones
that gave the gradient); a few candidates per example are kept, and the smallest that
holds over fresh passes is confirmed.

>>> result = eot_attack(sampler(bnn, guide), x, y, k=20, steps=100)
"""

from __future__ import annotations

import inspect

import torch

from .base import AttackResult, ModelFn, SampleFn, _agree, _draws, _number, _positive_int
from .min_norm import _run_ddn, min_norm_attack

__all__ = ["eot_attack", "eot_model", "miss_rate"]


def eot_model(sample_fn: SampleFn, k: int) -> ModelFn:
    """The model function of a stochastic model for EOT: x (N, D) -> probs (k, N, C).

    :param sample_fn: ``sample_fn(x, k)`` returns k independent draws of the decision rule
        (each one weight sample, or the mean of N samples) with fresh randomness on every
        call, e.g. :func:`~pyro_bnn.predict.sampler`.
    :param k: draws per call.

    >>> fn = eot_model(sampler(bnn, guide), k=20)  # fn(x): (20, N, C)
    """
    _positive_int("k", k)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return sample_fn(x, k)

    return fn


@torch.no_grad()
def miss_rate(
    sample_fn: SampleFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    passes: int = 32,
    batch_size: int = 10_000,
) -> torch.Tensor:
    """Fraction of ``passes`` fresh forward passes that misclassify each example: (N,).

    :param sample_fn: ``sample_fn(x, k) -> (k, N, C)``, e.g. :func:`~pyro_bnn.predict.sampler`.
    :param x: (N, D) inputs.
    :param y: (N,) int64 labels.
    :param passes: forward passes per example.
    :param batch_size: examples per call of sample_fn.

    >>> rates = miss_rate(sampler(bnn, guide), perturb(x, result.r), y)
    """
    _positive_int("passes", passes)
    _positive_int("batch_size", batch_size)
    rates = [torch.zeros(0, device=x.device)]
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        rates.append(1 - _agree(_draws(sample_fn(xb, passes), len(xb)), yb))
    return torch.cat(rates)


def eot_attack(
    sample_fn: SampleFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    k: int = 20,
    passes: int = 32,
    confidence: float = 0.8,
    candidates: int = 8,
    spacing: float = 0.02,
    progress: bool = True,
    **settings,
) -> AttackResult:
    """White-box EOT attack on a stochastic model (Athalye et al. 2018): DDN as in
    :func:`min_norm_attack` on ``eot_model(sample_fn, k)``, so each step averages the
    gradients of k draws.

    Each step judges x + r on k *fresh* draws, not on the draws that gave the gradient (which
    would favour lucky draws): it counts as misclassified when more than ``confidence`` of
    them get it wrong, and then becomes a candidate. Each example keeps its ``candidates``
    smallest, their norms more than ``spacing`` apart. At the end ``passes`` fresh passes
    judge the candidates from the smallest up, and the first that a majority misclassifies
    is kept; the attack fails only where none holds. ``settings`` go to DDN (steps,
    batch_size, gamma, alpha, half_life, n_targets; see :func:`min_norm_attack`); with
    n_targets each targeted pass adds its own candidates to the final check.

    :param sample_fn: ``sample_fn(x, k) -> (k, N, C)``, e.g. :func:`~pyro_bnn.predict.sampler`.
    :param x: (N, D) inputs in [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param k: draws whose gradients each step averages, and fresh draws that judge each step.
    :param passes: fresh passes that judge the final candidates.
    :param confidence: fraction of the k fresh draws that must be wrong during the attack.
    :param candidates: perturbations kept per example for the final check.
    :param spacing: least relative difference of the kept candidates' norms.
    :param progress: show a tqdm bar.

    >>> result = eot_attack(sampler(bnn, guide), x, y, k=20, steps=100)
    """
    if "output" in settings or "judge" in settings:
        raise ValueError("eot_attack sets output='probs' and judge itself")
    _positive_int("passes", passes)
    _positive_int("candidates", candidates)
    _number("spacing", spacing, 0, closed=True)

    def judge(x_adv: torch.Tensor, y_adv: torch.Tensor) -> torch.Tensor:
        return miss_rate(sample_fn, x_adv, y_adv, passes=passes)

    @torch.no_grad()
    def fresh(x_adv: torch.Tensor) -> torch.Tensor:
        return sample_fn(x_adv, k)

    ddn = {name: p.default for name, p in inspect.signature(min_norm_attack).parameters.items()}
    names = ("steps", "batch_size", "gamma", "alpha", "half_life", "n_targets")
    ddn = {name: ddn[name] for name in names}
    result = _run_ddn(
        eot_model(sample_fn, k), x, y, **(ddn | settings), output="probs", confidence=confidence,
        judge=judge, progress=progress, fresh=fresh, keep=candidates, spacing=spacing,
    )  # fmt: skip
    result.config |= {"attack": "eot", "k": k, "passes": passes}
    result.config |= {"candidates": candidates, "spacing": spacing}
    return result
