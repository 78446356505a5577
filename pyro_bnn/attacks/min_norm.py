"""The minimum-norm attack (Section 2.2, eq. 5) by DDN (Rony et al. 2019).

DDN runs gradient descent on eq. 5 with c adapted per example. For a given c the minimiser
of ``c|r| + l(f, x + r, y)`` lies on a sphere ``|r| = eps`` on which it minimises the loss, and a
larger c means a smaller eps; so instead of a binary search over c, DDN searches eps per
example (the dual variable, multiplicatively): eps shrinks by (1 - gamma) while x + r is
misclassified and grows by (1 + gamma) while it is not. Each step moves r along the
normalised gradient of the loss, rescales it to eps and projects x + r into the pixel box
[0, X_MAX]; r is signed. The loss is the margin log p_y - max_{j != y} log p_j, whose
gradient does not vanish on a saturated softmax as cross-entropy's does. Until an example
is first misclassified its radius may jump to the linearised distance to the boundary,
``|r| + margin/|grad|`` (as in FMN, Pintor et al. 2021), so no budget is spent growing eps.
The smallest misclassified r seen is kept. There is no random start, and the step size and
gamma decay with the step index alone, so the first T steps never depend on the budget:
more steps never give a larger norm (hence also no early stop). Following the runner-up
class, DDN can settle on a farther class's boundary; ``n_targets=k`` adds k passes
targeted at the classes nearest to first order and keeps the smallest r of all.

>>> result = min_norm_attack(net, data.test.x, data.test.y, steps=100)
>>> result.distortion()["distortion"]
"""

from __future__ import annotations

import math

import torch

from ..data import X_MAX
from .base import (
    NORM_FLOOR,
    AttackResult,
    Judge,
    ModelFn,
    _agree,
    _batched,
    _check_inputs,
    _draws,
    _into_box,
    _log_probs,
    _margin,
    _number,
    _positive_int,
    loss_grad,
)

__all__ = ["min_norm_attack"]


def _decay(start: float, floor: float, t: int, half_life: float) -> float:
    """start at t = 0, halving its distance to floor every half_life steps."""
    return floor + (start - floor) * 0.5 ** (t / half_life)


def _remember(cands, cnorm, delta, norm, adv, spacing) -> None:
    """Add each adversarial delta (B, D) to its example's candidates, in place.

    cands (B, M, D), cnorm (B, M) (inf: an empty slot) hold the M smallest candidates whose
    norms lie more than ``spacing`` (relative) apart. A delta near a smaller one is dropped;
    else it takes the slot of the nearby larger ones (freeing the rest) or the largest slot.
    With M = 1 this keeps the smallest adversarial delta.
    """
    near = (cnorm - norm[:, None]).abs() <= spacing * norm[:, None]  # (B, M)
    covered = (near & (cnorm <= norm[:, None])).any(1)
    slot = torch.where(near.any(1), near.long().argmax(1), cnorm.argmax(1))
    insert = adv & ~covered & (norm < cnorm.gather(1, slot[:, None]).squeeze(1))
    cnorm.masked_fill_(insert[:, None] & near, math.inf)
    rows = insert.nonzero().squeeze(1)
    cands[rows, slot[rows]] = delta[rows]
    cnorm[rows, slot[rows]] = norm[rows]


def _ddn(fn, x, y, bar, *, steps, output, gamma, alpha, half_life, confidence, fresh=None,
         keep=1, spacing=0.0, target=None):  # fmt: skip
    """DDN on one batch: (candidates (B, keep, D), their norms (B, keep), inf where empty).

    With a target (B,) the loss is log p_y - log p_target, so each step heads for that
    class's boundary; any misclassification still counts.

    x + r counts as misclassified when its miss rate exceeds ``confidence``: over the draws
    that gave the gradient, or over the draws of ``fresh``, a model function with fresh
    randomness, if given (so a lucky gradient draw neither picks a candidate nor moves the
    radius). Before the first success the radius may jump by |margin| / |grad| (the margin
    of the judging draws), which for a deterministic model is the linearised distance to
    the boundary; a stochastic one may be misclassified on average but not by ``confidence``
    of its draws, and the jump still moves its radius off zero.
    """
    delta = torch.zeros_like(x)
    cands = x.new_zeros(len(x), keep, x.shape[1])
    cnorm = torch.full((len(x), keep), math.inf, dtype=x.dtype, device=x.device)
    eps = torch.zeros_like(cnorm[:, 0])  # the radius, set by the first step
    far = torch.maximum(x, X_MAX - x).norm(dim=1)  # no r in the box is longer
    for t in range(steps):
        margin, grad, out = loss_grad(fn, x + delta, y, output=output, target=target)
        with torch.no_grad():
            if fresh is not None:
                out = _draws(fresh(x + delta), len(x))
                margin = _margin(_log_probs(out, output), y, target).mean(0)
            adv = 1 - _agree(out, y) > confidence
            norm = delta.norm(dim=1)
            _remember(cands, cnorm, delta, norm, adv, spacing)
            best_norm = cnorm.amin(1)
            g_t = _decay(gamma, gamma / 10, t, half_life)
            grad_norm = grad.norm(dim=1).clamp_min(NORM_FLOOR)
            # until the first success the radius may jump to the linearised boundary distance
            reach = torch.maximum(norm + margin.abs() / grad_norm, eps * (1 + g_t))
            grow = torch.where(best_norm.isfinite(), eps * (1 + g_t), reach)
            eps = torch.where(adv, (eps * (1 - g_t)).minimum(best_norm), grow).minimum(far)
            step = _decay(alpha, alpha / 100, t, half_life) * eps / grad_norm
            delta = delta - grad * step[:, None]  # grad may be an expanded view: no mul_
            delta.mul_((eps / delta.norm(dim=1).clamp_min(NORM_FLOOR))[:, None])
            delta = _into_box(x, delta)
        bar.update(1)
    return cands, cnorm


def _pick(x, y, cands, cnorm, judge) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest candidate that ``judge`` confirms (miss rate > 0.5), trying them in
    order of norm: (r (B, D), zero where none holds; miss rate (B,), of the kept r, else of
    the smallest candidate, 0 where there was none)."""
    order = cnorm.argsort(1)
    r, rate = torch.zeros_like(x), torch.zeros_like(x[:, 0])
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for j in range(cnorm.shape[1]):
        slot = order[:, j]
        rows = (~done & cnorm.gather(1, slot[:, None]).squeeze(1).isfinite()).nonzero()[:, 0]
        if not len(rows):
            break
        cand = cands[rows, slot[rows]]
        got = judge(x[rows] + cand, y[rows]).to(rate)
        if j == 0:
            rate[rows] = got
        held = rows[got > 0.5]
        r[held], rate[held], done[held] = cand[got > 0.5], got[got > 0.5], True
    return r, rate


@torch.no_grad()
def _nearest(fn, x, y, n, output, classes) -> torch.Tensor:
    """The n classes j != y nearest to each x (B, D) to first order, by |log p_y - log p_j|
    / |grad (log p_y - log p_j)| (for a linear net and logits, the unboxed distance),
    nearest first: (n, B)."""
    others = (y + torch.arange(1, classes, device=x.device)[:, None]) % classes  # (C-1, B)
    rows = x.repeat(classes - 1, 1)  # ((C-1) * B, D): others' rows, flattened
    margin, grad, _ = loss_grad(fn, rows, y.repeat(classes - 1), output=output,
                                target=others.reshape(-1))  # fmt: skip
    dist = (margin.abs() / grad.norm(dim=1).clamp_min(NORM_FLOOR)).reshape(classes - 1, len(x))
    return others.gather(0, dist.argsort(dim=0, stable=True)[:n])


def _run_ddn(fn, x, y, *, steps, output, batch_size, gamma, alpha, half_life, confidence,
             n_targets, judge, progress, fresh=None, keep=1,
             spacing=0.0) -> AttackResult:  # fmt: skip
    """Check the settings and run DDN batch by batch (see :func:`min_norm_attack`)."""
    _check_inputs(x, y, output)
    _positive_int("steps", steps)
    _positive_int("batch_size", batch_size)
    _number("gamma", gamma, 0, 1)
    _number("alpha", alpha, 0)
    _number("half_life", half_life, 0)
    _number("confidence", confidence, 0.5, 1, closed=True)
    if isinstance(n_targets, bool) or not isinstance(n_targets, int) or n_targets < 0:
        raise ValueError(f"n_targets must be a non-negative integer, got {n_targets!r}")
    classes = 0
    if n_targets and len(x):
        with torch.no_grad():
            classes = _draws(fn(x[:1]), 1).shape[-1]
        if n_targets >= classes:
            raise ValueError(f"n_targets must be below the number of classes, {classes}, got "
                             f"{n_targets}")  # fmt: skip
    settings = {"steps": steps, "output": output, "gamma": gamma, "alpha": alpha}
    settings |= {"half_life": half_life, "confidence": confidence}
    if judge is None:

        def judge(x_adv: torch.Tensor, y_adv: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return 1 - _agree(_draws(fn(x_adv), len(x_adv)), y_adv)

    def attack_batch(xb, yb, bar):
        ddn = {"fresh": fresh, "keep": keep, "spacing": spacing} | settings
        cands, cnorm = _ddn(fn, xb, yb, bar, **ddn)
        if n_targets:  # the targeted passes as one batch of n_targets copies of this one
            (b, d), t = xb.shape, n_targets
            target = _nearest(fn, xb, yb, t, output, classes)  # (T, B)
            more, more_norm = _ddn(
                fn, xb.repeat(t, 1), yb.repeat(t), bar, target=target.reshape(-1), **ddn
            )  # (T * B, keep, D), (T * B, keep)
            more = more.reshape(t, b, keep, d).transpose(0, 1).reshape(b, t * keep, d)
            more_norm = more_norm.reshape(t, b, keep).transpose(0, 1).reshape(b, t * keep)
            cands, cnorm = torch.cat([cands, more], 1), torch.cat([cnorm, more_norm], 1)
        return _pick(xb, yb, cands, cnorm, judge)

    r, rate = _batched(
        attack_batch, x, y, batch_size=batch_size, steps=steps * (2 if n_targets else 1),
        desc="min-norm", progress=progress,
    )  # fmt: skip
    return AttackResult(r, rate > 0.5, rate, {"attack": "ddn", "n_targets": n_targets, **settings})


def min_norm_attack(
    fn: ModelFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 100,
    output: str = "logits",
    batch_size: int = 10_000,
    gamma: float = 0.05,
    alpha: float = 1.0,
    half_life: float = 20.0,
    confidence: float = 0.5,
    n_targets: int = 0,
    judge: Judge | None = None,
    progress: bool = True,
) -> AttackResult:
    """Untargeted minimum-L2 attack on the objective of eq. 5 (Section 2.2) by DDN (see the
    module docstring), batch by batch; optionally also targeted at the nearest classes.

    :param fn: model function, x -> (N, C) or (K, N, C) (see :mod:`pyro_bnn.attacks`).
    :param x: (N, D) inputs in the pixel box [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param steps: gradient steps per batch.
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param batch_size: examples attacked at once.
    :param gamma: relative change of the radius per step, decaying to gamma/10.
    :param alpha: step length relative to the radius, decaying to alpha/100.
    :param half_life: gamma and alpha halve their distance to the floor every half_life steps.
    :param confidence: during the attack x + r counts as misclassified when more than this
        fraction of fn's K draws get it wrong. Above 0.5 it keeps the best r of a stochastic
        model off its fuzzy boundary, where a fresh judgement would be a coin flip; with one
        draw, or a deterministic model, it makes no difference.
    :param n_targets: also run DDN towards each of the n_targets classes j != y nearest to x
        to first order, ``|log p_y - log p_j| / |grad (log p_y - log p_j)|``, with the loss
        log p_y - log p_j, in one batch n_targets times as large; the smallest r of all
        passes that ``judge`` confirms is kept. Untargeted DDN can settle on a farther
        class's boundary (20-45 % above the minimum on a few % of MNIST images); 0 runs
        the untargeted pass alone, exactly as before.
    :param judge: judge(x + r, y) -> (N,) miss rate gives the final verdict on the best r
        (default: one more call of fn); r is zeroed where it is <= 0.5.
    :param progress: show a tqdm bar.

    >>> result = min_norm_attack(net, data.test.x, data.test.y, steps=200)
    >>> x_adv = perturb(data.test.x, result.r)
    """
    return _run_ddn(
        fn, x, y, steps=steps, output=output, batch_size=batch_size, gamma=gamma, alpha=alpha,
        half_life=half_life, confidence=confidence, n_targets=n_targets, judge=judge,
        progress=progress,
    )  # fmt: skip
