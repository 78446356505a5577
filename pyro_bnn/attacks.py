"""Minimum-norm adversarial perturbations (Section 2.2, eq. 5), the authors' 'paper'
variant, EOT, and fixed-budget PGD.

A *model function* ``fn`` maps x (N, 784) on the /126 pixel scale to logits or
probabilities (N, C), as ``output="logits"|"probs"`` says, or to (K, N, C): K independent
draws of a stochastic decision rule. With a leading K the loss is computed per draw and
averaged over K (expectation over transformation, EOT), so its gradient is the mean of the
per-draw gradients, and x + r counts as misclassified when more than ``confidence`` (by
default half) of the K draws get it wrong.

The rigorous default, :func:`min_norm_attack`, is DDN (Rony et al. 2019): gradient descent
on eq. 5 with c adapted per example. For a given c the minimiser of c|r| + l(f, x + r, y)
lies on a sphere |r| = eps on which it minimises the loss, and a larger c means a smaller
eps; so instead of a binary search over c, DDN searches eps per example (the dual
variable, multiplicatively): eps shrinks by (1 - gamma) while x + r is misclassified and
grows by (1 + gamma) while it is not. Each step moves r along the normalised gradient of
the loss, rescales it to eps and projects x + r into the pixel box [0, X_MAX]; r is signed.
The loss is the margin log p_y - max_{j != y} log p_j, whose gradient does not vanish on a
saturated softmax as cross-entropy's does. Until an example is first misclassified its
radius may jump to the linearised distance to the boundary, |r| + margin/|grad| (as in
FMN, Pintor et al. 2021), so no budget is spent growing eps. The smallest misclassified r
seen is kept. There is no random start, and the step size and gamma decay with the step
index alone, so the first T steps never depend on the budget: more steps never give a
larger norm (hence also no early stop). Following the runner-up class, DDN can settle on
a farther class's boundary; ``n_targets=k`` adds k passes targeted at the classes nearest
to first order and keeps the smallest r of all.

:func:`eot_attack` runs the same attack on k draws of a stochastic model per step, judges
each step's x + r on k fresh draws (not the ones that gave the gradient), keeps a few
candidates per example and confirms the smallest that holds over fresh passes.

:func:`pgd_attack` is the field's fixed-budget check (Madry et al. 2018; with EOT for a
stochastic rule, Athalye et al. 2018): robust accuracy within ||r|| <= eps of the decision
rule that is actually used, :func:`robust_accuracy` the same over several budgets;
:class:`PGDAdversary` is its inner maximisation for adversarial training.

:func:`paper_attack` is the authors' ``perturb_data`` (../shared/paper/AUTHORS_CODE.md),
each of its choices an option. ``runs/attack_sets.py`` stores results as artifacts.

>>> result = min_norm_attack(net, data.test.x, data.test.y, steps=100)
>>> result.distortion()["distortion"]
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .data import PIXEL_SCALE, X_MAX

__all__ = [
    "LOSSES",
    "OUTPUTS",
    "AttackResult",
    "PGDAdversary",
    "ModelFn",
    "PGDResult",
    "SampleFn",
    "distortion",
    "eot_attack",
    "eot_model",
    "loss_grad",
    "min_norm_attack",
    "miss_rate",
    "paper_attack",
    "perturb",
    "pgd_attack",
    "robust_accuracy",
]

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # x (N, D) -> (N, C) or (K, N, C)
SampleFn = Callable[[torch.Tensor, int], torch.Tensor]  # (x (N, D), k) -> probs (k, N, C)
Judge = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_adv, y) -> miss rate (N,)
OUTPUTS = ("logits", "probs")  # what a model function returns: its output= argument
TINY = torch.finfo(torch.float32).tiny  # floor for probabilities before log
NORM_FLOOR = 1e-12  # floor for norms we divide by: x / NORM_FLOOR stays finite, 0 * it is 0


@dataclass
class AttackResult:
    """What an attack found.

    :param r: (N, D) perturbations on the /126 scale, zero where the attack failed.
    :param success: (N,) bool, miss_rate > 0.5.
    :param miss_rate: (N,) fraction of the judging passes that misclassify x + r (0 or 1
        for a deterministic model, 0 where nothing was found).
    :param config: the attack's settings.

    >>> result = min_norm_attack(net, x, y)
    >>> result.norms()[result.success].median(), result.distortion()["distortion"]
    """

    r: torch.Tensor
    success: torch.Tensor
    miss_rate: torch.Tensor
    config: dict = field(default_factory=dict)

    def norms(self) -> torch.Tensor:
        """L2 norm of each r on the /126 scale: (N,)."""
        return self.r.norm(dim=1)

    def distortion(self) -> dict:
        """:func:`distortion` of this result."""
        return distortion(self.r, self.success)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"r": self.r, "success": self.success, "miss_rate": self.miss_rate}


def distortion(r: torch.Tensor, success: torch.Tensor | None = None) -> dict:
    """Summary statistics of perturbations r.

    distortion: (1/n) sum_i sqrt(||r_i||^2 / D) over the n successful examples (the paper's
    formula, Section 4.2); distortion_01: the same on Szegedy's [0, 1] pixel scale (times 126/255);
    median_l2(_01): median ||r_i|| over successful examples; median_l2_all: the median over
    all N with failures counted as infinite (the one more steps can only lower). n_zero:
    successes with r = 0 (misclassified already); distortion_nonzero: the distortion of the
    others. Medians are lower medians (torch.median); a statistic of no examples is nan.

    :param r: (N, D) perturbations on the /126 scale.
    :param success: (N,) bool, the examples where the attack succeeded; all if None.

    >>> distortion(result.r, result.success)["distortion"]
    """
    if r.dim() != 2:
        raise ValueError(f"r must be (N, D), got {tuple(r.shape)}")
    success = torch.ones(len(r), dtype=torch.bool) if success is None else success.cpu()
    if success.shape != (len(r),) or success.dtype != torch.bool:
        raise ValueError(f"success must be a (N,) bool tensor with N={len(r)}")
    norms = r.detach().cpu().double().norm(dim=1)
    ok, nan, to_01 = norms[success], float("nan"), PIXEL_SCALE / 255.0
    dist = float((ok / math.sqrt(r.shape[1])).mean()) if len(ok) else nan
    moved = ok[ok > 0]
    median = float(ok.median()) if len(ok) else nan
    return {
        "n": len(r),
        "n_success": int(success.sum()),
        "success_rate": float(success.double().mean()) if len(r) else nan,
        "distortion": dist,
        "distortion_01": dist * to_01,
        "median_l2": median,
        "median_l2_01": median * to_01,
        "median_l2_all": float(norms.masked_fill(~success, math.inf).median()) if len(r) else nan,
        "n_zero": len(ok) - len(moved),
        "distortion_nonzero": float((moved / math.sqrt(r.shape[1])).mean()) if len(moved) else nan,
    }


def perturb(
    x: torch.Tensor, r: torch.Tensor, *, scale: float = 1.0, clip: bool = True
) -> torch.Tensor:
    """x + scale * r, clipped to the pixel box [0, X_MAX] unless clip=False.

    :param x: (N, D) inputs on the /126 scale.
    :param r: (N, D) perturbations.
    :param scale: multiplies r (the authors' BNN transfer evaluation used 1.5).
    :param clip: clip the result to [0, X_MAX].

    >>> x_adv = perturb(data.test.x, result.r, scale=1.5)
    """
    out = x + scale * r
    return out.clamp(0.0, X_MAX) if clip else out


# ----------------------------------------------------------------------------- helpers


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _number(name: str, value, low: float, high: float = math.inf, *, closed: bool = False):
    """Raise unless value is a number with low < value < high (low <= value if closed)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (ok and (value >= low if closed else value > low) and value < high):
        sign = ">=" if closed else ">"
        raise ValueError(f"{name} must be {sign} {low} and < {high}, got {value!r}")


def _check_inputs(x: torch.Tensor, y: torch.Tensor, output: str) -> None:
    if x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, D) tensor, got {x.dtype} {tuple(x.shape)}")
    if y.shape != (len(x),) or y.dtype != torch.long:
        raise ValueError(f"y must be (N,) int64 with N={len(x)}, got {y.dtype} {tuple(y.shape)}")
    if len(x) and (x.min() < 0 or x.max() > X_MAX):
        raise ValueError(f"x must lie in the pixel box [0, {X_MAX:.4f}] (the /126 scale)")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def _draws(out: torch.Tensor, n: int) -> torch.Tensor:
    """A model output as (K, N, C)."""
    out = out.unsqueeze(0) if out.dim() == 2 else out
    if out.dim() != 3 or out.shape[1] != n:
        raise ValueError(f"fn must return (N, C) or (K, N, C) with N={n}, got {tuple(out.shape)}")
    return out


def _log_probs(out: torch.Tensor, output: str) -> torch.Tensor:
    return out.log_softmax(-1) if output == "logits" else out.clamp_min(TINY).log()


def _margin(logp: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None):
    """log p_y - max_{j != y} log p_j per draw, or log p_y - log p_target if a target (N,)
    is given: logp (K, N, C) -> (K, N)."""
    index = y.expand(len(logp), -1).unsqueeze(-1)
    true = logp.gather(-1, index).squeeze(-1)
    if target is not None:
        return true - logp.gather(-1, target.expand(len(logp), -1).unsqueeze(-1)).squeeze(-1)
    return true - logp.scatter(-1, index, -math.inf).amax(-1)


def _agree(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of the K draws whose argmax equals labels. out: (K, ..., C) -> (...)."""
    return (out.argmax(-1) == labels).float().mean(0)


def _into_box(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """r with 0 <= x + r <= X_MAX (x in the box), exactly in float32 and float64.

    For floats 0 <= a, x <= X_MAX, x + fl(a - x) lands off a only on a rounding tie, and a
    tie at a = X_MAX rounds back to X_MAX because its mantissa is even in both dtypes; so
    the sum never leaves the box (tests/test_attacks.py checks the worst cases).
    """
    return (x + r).clamp_(0.0, X_MAX).sub_(x)


def _decay(start: float, floor: float, t: int, half_life: float) -> float:
    """start at t = 0, halving its distance to floor every half_life steps."""
    return floor + (start - floor) * 0.5 ** (t / half_life)


def _batched(attack_batch, x, y, *, batch_size, steps, desc, progress) -> tuple:
    """Run attack_batch(xb, yb, bar) -> (r, miss rate) over batches; (r (N, D), rate (N,))."""
    rs, rates = [torch.zeros(0, x.shape[1])], [torch.zeros(0)]
    total = steps * math.ceil(len(x) / batch_size)
    with tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(x), batch_size):
            r, rate = attack_batch(x[i : i + batch_size], y[i : i + batch_size], bar)
            rs.append(r.detach().cpu())
            rates.append(rate.cpu())
    return torch.cat(rs), torch.cat(rates)


def loss_grad(
    fn: ModelFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    output: str = "logits",
    target: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attack loss and its input gradient: (margin (N,), grad (N, D), output (K, N, C)).

    margin: the mean over the K draws of log p_y - max_{j != y} log p_j (< 0: misclassified),
    or of log p_y - log p_target (< 0: past class target's boundary) if target is given.

    :param fn: model function (see the module docstring).
    :param x: (N, D) inputs.
    :param y: (N,) int64 labels.
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param target: (N,) int64 classes, or None.

    >>> margin, grad, out = loss_grad(net, x, y)
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = _draws(fn(x), len(x))
        margin = _margin(_log_probs(out, output), y, target).mean(0)
        (grad,) = torch.autograd.grad(margin.sum(), x)
    return margin.detach(), grad, out.detach()


# ----------------------------------------------------------------------------- rigorous


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

    :param fn: model function, x -> (N, C) or (K, N, C) (see the module docstring).
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
        to first order, |log p_y - log p_j| / |grad (log p_y - log p_j)|, with the loss
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


# ----------------------------------------------------------------------------- paper


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
    rms_eps: float = 1e-7,
    c_max: float = 2.0,
    prob_clip: float = 1e-7,
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

    :param fn: model function (see the module docstring).
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


# ----------------------------------------------------------------------------- EOT


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


# ----------------------------------------------------------------------------- PGD


@dataclass
class PGDResult:
    """What a fixed-budget attack found: the worst perturbation per example within eps.

    :param r: (N, D) perturbations on the /126 scale, ||r|| <= eps, x + r in the box.
    :param robust: (N,) fraction of fresh draws of the decision rule that still classify
        x + r correctly (0 or 1 for a deterministic rule).
    :param eps: (N,) the L2 budget of each example.
    :param config: the attack's settings.

    >>> result = pgd_attack(net, x, y, eps=1.0)
    >>> result.accuracy(), result.robust.mean()
    """

    r: torch.Tensor
    robust: torch.Tensor
    eps: torch.Tensor
    config: dict = field(default_factory=dict)

    def accuracy(self) -> float:
        """Robust accuracy: the mean of ``robust``."""
        return float(self.robust.double().mean()) if len(self.robust) else math.nan

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"r": self.r, "robust": self.robust, "eps": self.eps}


LOSSES = ("margin", "ce")  # what pgd_attack ascends: its loss= argument


def _calls(fn: ModelFn, x: torch.Tensor, calls: int) -> torch.Tensor:
    """``calls`` calls of fn on x, each with its own randomness: (calls * K, N, C)."""
    return torch.cat([_draws(fn(x), len(x)) for _ in range(calls)])


@torch.no_grad()
def _verdict(fn, x_adv, y, *, passes, output) -> tuple[torch.Tensor, torch.Tensor]:
    """Over ``passes`` fresh calls: (fraction of draws correct (B,), mean margin (B,))."""
    out = _calls(fn, x_adv, passes)
    return _agree(out, y), _margin(_log_probs(out, output), y).mean(0)


def _budget(eps, x: torch.Tensor) -> torch.Tensor:
    """eps, a number or an (N,) tensor, as an (N,) tensor like x's; ValueError unless > 0."""
    if not isinstance(eps, torch.Tensor):
        _number("eps", eps, 0)
        return torch.full((len(x),), float(eps), dtype=x.dtype, device=x.device)
    if eps.shape != (len(x),) or not (torch.isfinite(eps) & (eps > 0)).all():
        raise ValueError(f"eps must be finite and > 0: a number or an (N,) tensor, N={len(x)}")
    return eps.to(x)


def _in_ball(x, eps, generator, norm: str = "L2") -> torch.Tensor:
    """A uniform draw from the ``norm`` ball of radius eps (B,) around each x (B, D), into
    the box."""
    like = {"generator": generator, "device": x.device, "dtype": x.dtype}
    if norm == "Linf":
        return _into_box(x, (2 * torch.rand(x.shape, **like) - 1) * eps[:, None])
    u = torch.randn(x.shape, **like)
    radius = eps * torch.rand(len(x), **like).pow(1 / x.shape[1])
    return _into_box(x, u * (radius / u.norm(dim=1).clamp_min(NORM_FLOOR))[:, None])


def _pgd(fn, x, y, eps, generator, bar, *, steps, restarts, eot, step_size, loss, output,
         passes, norm):  # fmt: skip
    """PGD with restarts on one batch: (worst r (B, D), robust (B,))."""
    alpha = 2.5 * eps / steps if step_size is None else torch.full_like(eps, step_size)
    best = torch.zeros_like(x)
    best_acc = torch.full_like(eps, math.inf)
    best_margin = torch.full_like(eps, math.inf)
    for _ in range(restarts):
        r = _in_ball(x, eps, generator, norm)
        for _ in range(steps):
            v = (x + r).requires_grad_(True)
            with torch.enable_grad():
                logp = _log_probs(_calls(fn, v, eot), output)  # (eot * K, B, C)
                if loss == "margin":
                    objective = _margin(logp, y).mean(0)
                else:
                    objective = logp.gather(-1, y.expand(len(logp), -1)[..., None]).mean((0, 2))
                if not objective.requires_grad:
                    raise ValueError("fn must be differentiable in x (not run under no_grad)")
                (grad,) = torch.autograd.grad(objective.sum(), v)
            with torch.no_grad():  # descend on the true class's margin / log-probability
                if norm == "Linf":  # the steepest step in L-inf: the gradient's sign
                    r = (r - alpha[:, None] * grad.sign()).clamp(-eps[:, None], eps[:, None])
                else:
                    r = r - grad * (alpha / grad.norm(dim=1).clamp_min(NORM_FLOOR))[:, None]
                    r = r * (eps / r.norm(dim=1).clamp_min(NORM_FLOOR)).clamp(max=1)[:, None]
                r = _into_box(x, r)
            bar.update(1)
        acc, margin = _verdict(fn, x + r, y, passes=passes, output=output)
        worse = (acc < best_acc) | ((acc == best_acc) & (margin < best_margin))
        best = torch.where(worse[:, None], r, best)
        best_acc, best_margin = best_acc.where(~worse, acc), best_margin.where(~worse, margin)
    # the verdict that picked the worst restart favours it: judge it again on fresh draws
    return best, _verdict(fn, x + best, y, passes=passes, output=output)[0]


def pgd_attack(
    fn: ModelFn,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    *,
    steps: int = 50,
    restarts: int = 1,
    eot: int = 1,
    step_size: float | None = None,
    loss: str = "margin",
    output: str = "logits",
    passes: int = 32,
    batch_size: int = 10_000,
    progress: bool = True,
    seed: int = 0,
    norm: str = "L2",
) -> PGDResult:
    """Fixed-budget PGD (Madry et al. 2018) with EOT (Athalye et al. 2018) and random
    restarts, in L2 or L-inf: robust accuracy of a decision rule within ||r|| <= eps.

    ``fn`` IS the decision rule under attack, so pass the rule that is used: a plain net, a
    single-sample BNN (one fresh weight draw per call, e.g. ``eot_model(sampler(bnn, guide),
    1)``), or an N-sample ensemble's mean probabilities (``eot_model(sampler(bnn, guide, N),
    1)``); a call may return K draws at once (K, N, C), each counted as one draw. Each step
    descends on the loss of the true class (the margin log p_y - max_{j != y} log p_j, or
    log p_y, i.e. ascends cross-entropy), averaged over ``eot`` calls of fn, along the
    normalised gradient; r is then projected onto the eps-ball and into the pixel box
    [0, X_MAX]. Each restart starts uniformly in the ball. The worst restart per example
    is picked on ``passes`` fresh calls (fewest draws correct, then lowest margin), and its
    ``robust`` value is judged on another ``passes`` fresh calls.

    :param fn: the decision rule, x (N, D) -> (N, C) or (K, N, C), fresh randomness per call.
    :param x: (N, D) inputs in the pixel box [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param eps: L2 budget on the /126 scale, a number or an (N,) tensor, > 0.
    :param steps: gradient steps per restart.
    :param restarts: random starts per example; the worst result counts.
    :param eot: calls of fn whose gradients each step averages (1 for a deterministic rule).
    :param step_size: L2 length of a step; default 2.5 * eps / steps.
    :param loss: 'margin' or 'ce'.
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param passes: fresh calls of fn that judge each restart's r, and again the worst one
        (1 suffices for a deterministic rule).
    :param batch_size: examples attacked at once.
    :param progress: show a tqdm bar.
    :param seed: seeds the random starts (fn's own randomness is fn's).
    :param norm: 'L2' (steps along the normalised gradient) or 'Linf' (along its sign,
        r clipped to [-eps, eps]; eps then bounds each pixel, on the /126 scale).

    >>> result = pgd_attack(net, data.test.x, data.test.y, eps=1.5, restarts=5, passes=1)
    >>> pgd_attack(eot_model(sampler(bnn, guide), 1), x, y, 1.5, eot=20, output="probs")
    """
    _check_inputs(x, y, output)
    eps = _budget(eps, x)
    for name, value in (("steps", steps), ("restarts", restarts), ("eot", eot)):
        _positive_int(name, value)
    _positive_int("passes", passes)
    _positive_int("batch_size", batch_size)
    if step_size is not None:
        _number("step_size", step_size, 0)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if norm not in ("L2", "Linf"):
        raise ValueError(f"norm must be 'L2' or 'Linf', got {norm!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    settings = {"steps": steps, "restarts": restarts, "eot": eot, "step_size": step_size}
    settings |= {"loss": loss, "output": output, "passes": passes, "norm": norm}
    generator = torch.Generator(device=x.device).manual_seed(seed)
    rs, robust = [torch.zeros(0, x.shape[1])], [torch.zeros(0)]
    total = steps * restarts * math.ceil(len(x) / batch_size)
    with tqdm(total=total, desc="pgd", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(0, len(x), batch_size):
            part = slice(i, i + batch_size)
            r, ok = _pgd(fn, x[part], y[part], eps[part], generator, bar, **settings)
            rs.append(r.detach().cpu())
            robust.append(ok.cpu())
    config = {"attack": "pgd", "seed": seed, **settings}
    return PGDResult(torch.cat(rs), torch.cat(robust), eps.cpu(), config)


def robust_accuracy(
    fn: ModelFn, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], **settings
) -> dict[float, float]:
    """Robust accuracy under :func:`pgd_attack` at each budget: {eps: accuracy}.

    :param fn: the decision rule (see :func:`pgd_attack`).
    :param x: (N, D) inputs in the pixel box [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param eps_list: L2 budgets on the /126 scale, each > 0.
    :param settings: go to :func:`pgd_attack` (steps, restarts, eot, output, passes, seed...).

    >>> robust_accuracy(net, x, y, [0.5, 1.0, 2.0], restarts=5, passes=1)
    {0.5: 0.93, 1.0: 0.71, 2.0: 0.12}
    """
    return {float(eps): pgd_attack(fn, x, y, eps, **settings).accuracy() for eps in eps_list}


@dataclass(frozen=True)
class PGDAdversary:
    """Adversarial training's inner maximisation (Madry et al. 2018), for
    ``fit_torch(net, data, adversary=PGDAdversary(eps=2.0))``: each minibatch becomes an
    L2 PGD attack (:func:`pgd_attack`, one restart) on the net as it is.

    A dataclass, so its repr, stored in a checkpoint's config, is the same in every process.
    The random start is seeded from torch's global RNG, which fit_torch seeds.

    :param eps: L2 budget on the /126 scale.
    :param steps: PGD steps per minibatch.
    :param loss: 'ce' (as Madry et al.) or 'margin'.

    >>> fit_torch(MLP("FC-100-100-10"), load_mnist(), adversary=PGDAdversary(eps=2.0))
    >>> x_adv = PGDAdversary(eps=1.0, steps=20)(net, x, y)  # ||x_adv - x|| <= 1, in the box
    """

    eps: float
    steps: int = 10
    loss: str = "ce"

    def __post_init__(self):
        _number("eps", self.eps, 0)
        _positive_int("steps", self.steps)
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def __call__(self, model: ModelFn, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(2**31, ()))
        result = pgd_attack(model, x, y, self.eps, steps=self.steps, loss=self.loss, passes=1,
                            batch_size=len(x), progress=False, seed=seed)  # fmt: skip
        return x + result.r.to(x)
