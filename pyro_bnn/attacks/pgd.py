"""Fixed-budget PGD (Madry et al. 2018; with EOT for a stochastic rule, Athalye et al.
2018): robust accuracy within ||r|| <= eps of the decision rule that is actually used,
and :class:`PGDAdversary`, its inner maximisation for adversarial training.

>>> pgd_attack(net, x, y, eps=1.5).accuracy()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .base import (
    NORM_FLOOR,
    ModelFn,
    _agree,
    _check_inputs,
    _draws,
    _into_box,
    _log_probs,
    _margin,
    _number,
    _positive_int,
)

__all__ = ["LOSSES", "PGDAdversary", "PGDResult", "pgd_attack", "robust_accuracy"]


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
