"""Model functions, attack results, and the checks and losses every attack shares.

>>> margin, grad, out = loss_grad(net, x, y)
>>> distortion(result.r, result.success)["distortion"]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..data import PIXEL_SCALE, X_MAX

__all__ = [
    "OUTPUTS",
    "AttackResult",
    "ModelFn",
    "SampleFn",
    "distortion",
    "loss_grad",
    "perturb",
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

    :param fn: model function (see :mod:`pyro_bnn.attacks`).
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
