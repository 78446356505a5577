"""The authors' attack: ``perturb_data`` (../shared/paper/AUTHORS_CODE.md), each of its
choices an option.

>>> result = paper_attack(net, data.val.x, data.val.y)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import (
    AttackResult,
    ModelFn,
    _agree,
    _batched,
    _check_inputs,
    _draws,
    _log_probs,
    _number,
    _positive_int,
)

__all__ = ["KERAS_EPSILON", "live_targets", "paper_attack"]

KERAS_EPSILON = 1e-7
"""Keras' backend epsilon: its RMSprop's epsilon, and its cross-entropy clips
probabilities to [KERAS_EPSILON, 1 - KERAS_EPSILON]."""


def _paper_batch(fn, x, y, tgt, bar, *, steps, output, brighten_only, r_init, r_min, box_max,
                 lr, rho, rms_eps, c_max, prob_clip, mean_over):  # fmt: skip
    """All targets tgt (T, B) of one batch at once: (best r (B, D), miss rate (B,))."""
    n_t, (b, d) = len(tgt), x.shape
    xx = x.expand(n_t, b, d)
    low = torch.full_like(xx, r_min) if brighten_only else -xx
    high = box_max - xx

    def model(r: torch.Tensor) -> torch.Tensor:
        out = _draws(fn((xx + r).reshape(n_t * b, d)), n_t * b)
        return out.reshape(len(out), n_t, b, -1)  # (K, T, B, C)

    r = torch.full_like(xx, r_init)  # as in the authors' code, clipped after the first step
    mean_sq = torch.zeros_like(r)
    index = tgt.unsqueeze(-1)  # (T, B, 1)
    for t in range(steps):
        c = c_max * (t + 1) / steps
        r.requires_grad_(True)
        with torch.enable_grad():
            logp = _log_probs(model(r), output)
            picked = logp.gather(-1, index.expand(len(logp), -1, -1, -1))
            if prob_clip:
                picked = picked.exp().clamp(prob_clip, 1 - prob_clip).log()
            loss = (r.norm(dim=-1).sum() - picked.mean(0).sum() / c) / mean_over
            (grad,) = torch.autograd.grad(loss, r)
        with torch.no_grad():  # RMSprop in place: no new (T, B, D) tensor per step but one
            r = r.detach()
            mean_sq.mul_(rho).addcmul_(grad, grad, value=1 - rho)
            r.addcdiv_(grad, mean_sq.sqrt().add_(rms_eps), value=-lr)
            torch.maximum(r, low, out=r)
            torch.minimum(r, high, out=r)
        bar.update(1)
    with torch.no_grad():
        out = model(r)
        hit = (_agree(out, tgt) > 0.5) & (tgt != y)  # (T, B)
        best_norm, best_t = torch.where(hit, r.norm(dim=-1), math.inf).min(0)
        found, cols = best_norm.isfinite(), torch.arange(b, device=x.device)
        rate = torch.where(found, 1 - _agree(out[:, best_t, cols], y), torch.zeros_like(best_norm))
        return torch.where(found[:, None], r[best_t, cols], torch.zeros_like(x)), rate


def paper_attack(
    fn: ModelFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 4000,
    output: str = "logits",
    targets: Sequence[int] | None = None,
    brighten_only: bool = True,
    r_init: float = 0.02,
    r_min: float = 1e-6,
    box_max: float = 2.03,
    lr: float = 0.01,
    rho: float = 0.9,
    rms_eps: float = KERAS_EPSILON,
    c_max: float = 2.0,
    prob_clip: float = KERAS_EPSILON,
    mean_over: int = 10_000,
    batch_size: int = 1_000,
    progress: bool = True,
) -> AttackResult:
    """The authors' targeted attack (``perturb_data``), vectorised over examples and targets:
    eq. 5 (Section 2.2) divided by c, with the loss a target's cross-entropy.

    For each target k it minimises ||r||_2 + (1/c) CE(fn(x + r), k), c ramped linearly from
    c_max/steps to c_max, by RMSprop as in Keras (accumulator starting at 0). Success for k
    is judged once, at the end: argmax fn(x + r) == k. The smallest-norm success over
    targets is kept; examples with none fail (r = 0), and the authors drop them.

    :param fn: model function (see :mod:`pyro_bnn.attacks`).
    :param x: (N, D) inputs in the pixel box [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param steps: RMSprop steps (the authors': 4000).
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param targets: the target classes; default every class but y (a listed k equal to y
        is skipped).
    :param brighten_only: clip r after every step to [r_min, box_max - x], as the authors
        do; else to [-x, box_max - x].
    :param r_init: the starting value of every entry of r.
    :param r_min: the lower clip of r when brighten_only.
    :param box_max: the top of the pixel box (the authors' 2.03 is slightly above X_MAX).
    :param lr: RMSprop learning rate.
    :param rho: RMSprop's decay of the squared-gradient average.
    :param rms_eps: RMSprop's epsilon.
    :param c_max: the last step's c.
    :param prob_clip: CE clips the target's probability to [prob_clip, 1 - prob_clip] as
        Keras does (0: no clip), which zeroes the gradient of targets below prob_clip.
    :param mean_over: the loss is a mean over this many examples (the authors' batch),
        which scales the gradient RMSprop sees.
    :param batch_size: examples per batch (each batch runs T x batch_size rows through fn).
    :param progress: show a tqdm bar.

    >>> result = paper_attack(net, data.val.x, data.val.y)
    >>> kept = data.val.x[result.success] + result.r[result.success]
    """
    _check_inputs(x, y, output)
    _positive_int("steps", steps)
    _positive_int("mean_over", mean_over)
    _positive_int("batch_size", batch_size)
    _number("r_init", r_init, 0, closed=True)
    _number("r_min", r_min, 0, closed=True)
    _number("box_max", box_max, 0)
    _number("lr", lr, 0)
    _number("rho", rho, 0, 1, closed=True)
    _number("rms_eps", rms_eps, 0, closed=True)
    _number("c_max", c_max, 0)
    _number("prob_clip", prob_clip, 0, 0.5, closed=True)
    with torch.no_grad():
        n_classes = _draws(fn(x[:1]), 1).shape[-1] if len(x) else 0
    if targets is not None and (not targets or not all(0 <= k < n_classes for k in targets)):
        raise ValueError(f"targets must be class indices in [0, {n_classes}), got {targets!r}")
    settings = {"steps": steps, "output": output, "brighten_only": brighten_only}
    settings |= {"r_init": r_init, "r_min": r_min, "box_max": box_max, "lr": lr, "rho": rho}
    settings |= {"rms_eps": rms_eps, "c_max": c_max, "prob_clip": prob_clip}
    settings["mean_over"] = mean_over

    def attack_batch(xb, yb, bar):
        if targets is None:
            offsets = torch.arange(1, n_classes, device=xb.device)
            tgt = (yb + offsets[:, None]) % n_classes  # (T, B): every class but y
        else:
            tgt = torch.tensor(list(targets), device=xb.device)[:, None].expand(-1, len(yb))
        return _paper_batch(fn, xb, yb, tgt, bar, **settings)

    r, rate = _batched(
        attack_batch, x, y, batch_size=batch_size, steps=steps, desc="paper", progress=progress
    )
    return AttackResult(r, rate > 0.5, rate, {"attack": "paper", "targets": targets, **settings})


def live_targets(
    fn: ModelFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    output: str = "logits",
    r_init: float = 0.02,
    prob_clip: float = KERAS_EPSILON,
    batch_size: int = 1_000,
) -> torch.Tensor:
    """Which targets :func:`paper_attack` can move at its start, x + r_init: those whose
    probability lies inside the clip [prob_clip, 1 - prob_clip] in some draw. The clipped
    cross-entropy of any other target has no gradient, so only the norm term acts and the
    attack shrinks r to r_min: an example with no live target all but never survives.

    :param fn: model function (see :mod:`pyro_bnn.attacks`).
    :param x: (N, D) inputs in the pixel box (the /126 scale).
    :param y: (N,) int64 true labels; the true class is never a target.
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param r_init: the attack's starting perturbation of every pixel.
    :param prob_clip: the attack's clip (0: every target is live).
    :param batch_size: examples per forward pass.
    :returns: (N, C) bool.

    >>> live = live_targets(net, data.val.x, data.val.y)
    >>> ceiling = live.any(-1).float().mean()  # the share of examples that can survive
    """
    _check_inputs(x, y, output)
    _number("r_init", r_init, 0, closed=True)
    _number("prob_clip", prob_clip, 0, 0.5, closed=True)
    _positive_int("batch_size", batch_size)
    rows = []
    with torch.no_grad():
        for lo in range(0, len(x), batch_size):
            xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
            p = _log_probs(_draws(fn(xb + r_init), len(xb)), output).exp()  # (K, B, C)
            inside = (
                ((p > prob_clip) & (p < 1 - prob_clip)).any(0) if prob_clip else p.isfinite().all(0)
            )
            rows.append(inside.scatter(-1, yb[:, None], False))
    return torch.cat(rows) if rows else torch.zeros(0, 0, dtype=torch.bool)
