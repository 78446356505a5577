"""APGD (Croce & Hein 2020) from torchattacks on this package's decision rules, in L2 and
L-inf, and the per-example worst case over an ensemble of fixed-budget attacks.

torchattacks attacks a torch module on [0, 1] pixels that returns logits. :class:`RuleModule`
turns a model function (see :mod:`pyro_bnn.attacks`: x on the /126 scale -> logits or
probabilities, (N, C) or K draws (K, N, C)) into one: it rescales the pixels and returns
the log of the rule's mean probability over its draws, computed by logsumexp where the
rule gives logits, so the loss cannot underflow. APGD's ``eot_iter`` then averages the
gradient over fresh calls (EOT). Budgets here are on the /126 scale, as everywhere in the
package: an L-inf eps of 0.1 on [0, 1] pixels is 0.1 * X_MAX.

>>> result = apgd_attack(net, x, y, eps=0.3 * X_MAX, norm="Linf", loss="dlr")
>>> worst = worst_case([pgd_attack(net, x, y, 1.5), apgd_attack(net, x, y, 1.5)])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchattacks

from ..data import X_MAX
from .base import _check_inputs, _number, _positive_int
from .pgd import PGDResult, _budget, _calls, _verdict

__all__ = ["APGD_LOSSES", "NORMS", "RuleModule", "apgd_attack", "worst_case"]

NORMS = ("L2", "Linf")
APGD_LOSSES = ("ce", "dlr", "dlr-targeted")  # APGD-CE, APGD-DLR, APGD-T


class RuleModule(torch.nn.Module):
    """A decision rule as a module on [0, 1] pixels: x01 (N, ...) -> (N, C) log-probabilities
    of the rule, log of the mean over its K draws (one call of ``fn`` on x01 flattened to
    (N, D), fresh randomness).

    :param fn: the model function, x (N, D) on the /126 scale -> (N, C) or (K, N, C).
    :param output: 'logits' or 'probs', what ``fn`` returns.

    >>> logp = RuleModule(eot_model(sampler(bnn, guide, 10, log=True), 1))(x / X_MAX)
    """

    def __init__(self, fn, output: str = "logits") -> None:
        super().__init__()
        self.fn, self.output = fn, output
        self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)  # its device

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        out = _calls(self.fn, x01.flatten(1) * X_MAX, 1)  # (K, N, C)
        if self.output == "logits":
            logp = out.log_softmax(-1)
        else:  # probabilities: their log, floored at the smallest normal float
            logp = out.clamp_min(torch.finfo(out.dtype).tiny).log()
        return logp.logsumexp(0) - math.log(len(out))  # (N, C) log of the mean probability


class _DetachedAPGD(torchattacks.APGD):
    """torchattacks' APGD whose runs return detached tensors. Its runs copy x_adv, a leaf
    that requires grad, into their best points without detaching, and perturb keeps those
    across restarts (and, in APGD-T, targets): every run's graph stayed alive, 20 GB for
    FC-10 on 500 images with 10 restarts."""

    def attack_single_run(self, x_in, y_in):
        return tuple(t.detach() for t in super().attack_single_run(x_in, y_in))


class _DetachedAPGDT(torchattacks.APGDT):
    """torchattacks' APGD-T, its runs detached as :class:`_DetachedAPGD`'s are."""

    def attack_single_run(self, x_in, y_in):
        return tuple(t.detach() for t in super().attack_single_run(x_in, y_in))


def apgd_attack(
    fn,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "L2",
    loss: str = "ce",
    steps: int = 100,
    restarts: int = 1,
    eot: int = 1,
    output: str = "logits",
    passes: int = 32,
    seed: int = 0,
) -> PGDResult:
    """APGD from torchattacks (its step-size schedule, not PGD's fixed one) on a decision
    rule: the worst r with ||r||_norm <= eps per example, judged on fresh calls.

    :param fn: the decision rule, x (N, D) -> (N, C) or (K, N, C), fresh randomness per call.
    :param x: (N, D) inputs in the pixel box [0, X_MAX] (the /126 scale).
    :param y: (N,) int64 true labels.
    :param eps: the budget on the /126 scale, > 0.
    :param norm: 'L2' or 'Linf'.
    :param loss: 'ce' (APGD-CE), 'dlr' (APGD-DLR) or 'dlr-targeted' (APGD-T, each of the
        other classes in turn, ``restarts`` each).
    :param steps: iterations per restart.
    :param restarts: random restarts.
    :param eot: calls of fn whose gradients each iteration averages.
    :param output: 'logits' or 'probs', what ``fn`` returns.
    :param passes: fresh calls of fn that judge the final r (1 for a deterministic rule).
    :param seed: seeds the random starts.

    >>> apgd_attack(net, x, y, 0.1 * X_MAX, norm="Linf", loss="dlr-targeted", passes=1)
    """
    _check_inputs(x, y, output)
    _number("eps", eps, 0)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in APGD_LOSSES:
        raise ValueError(f"loss must be one of {APGD_LOSSES}, got {loss!r}")
    for name, value in (("steps", steps), ("restarts", restarts), ("eot", eot),
                        ("passes", passes)):  # fmt: skip
        _positive_int(name, value)
    module = RuleModule(fn, output).to(x.device)
    kwargs = {"norm": norm, "eps": eps / X_MAX, "steps": steps, "n_restarts": restarts,
              "seed": seed, "eot_iter": eot}  # fmt: skip
    if loss == "dlr-targeted":
        with torch.no_grad():
            n_classes = _calls(fn, x[:1], 1).shape[-1]
        attack = _DetachedAPGDT(module, n_classes=n_classes, **kwargs)
    else:
        attack = _DetachedAPGD(module, loss=loss, **kwargs)
    images = (x / X_MAX)[:, None, None, :]  # (N, 1, 1, D): torchattacks takes images
    r = (attack(images, y).flatten(1) * X_MAX - x).detach()
    r = _project(r, eps, norm)
    robust, _ = _verdict(fn, x + r, y, passes=passes, output=output)
    config = {"attack": f"apgd-{loss}", "norm": norm, "steps": steps, "restarts": restarts,
              "eot": eot, "passes": passes, "seed": seed}  # fmt: skip
    return PGDResult(r.cpu(), robust.cpu(), _budget(eps, x).cpu(), config)


def _project(r: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """r back inside the eps-ball, against the rounding of the [0, 1] round trip."""
    if norm == "Linf":
        return r.clamp(-eps, eps)
    return r * (eps / r.norm(dim=1).clamp_min(1e-12)).clamp(max=1)[:, None]


def worst_case(results: Sequence[PGDResult]) -> PGDResult:
    """Per example, the attack that left the fewest draws correct: robust accuracy under an
    ensemble of attacks is the mean of its ``robust``. For a stochastic rule the minimum of
    noisy verdicts is biased low: judge the returned r again on fresh draws.

    :param results: attacks of one rule on the same examples (any order); ties keep the
        first.

    >>> worst_case([pgd_attack(net, x, y, 1.5), apgd_attack(net, x, y, 1.5)]).accuracy()
    """
    if not results:
        raise ValueError("results must hold at least one attack")
    robust = torch.stack([res.robust for res in results])  # (A, N)
    if len({tuple(res.robust.shape) for res in results}) != 1:
        raise ValueError("results must be attacks on the same examples")
    pick = robust.argmin(0)  # (N,) the worst attack per example
    r = torch.stack([res.r for res in results])[pick, torch.arange(robust.shape[1])]
    config = {"attack": "worst-case", "of": [res.config for res in results],
              "picked": torch.bincount(pick, minlength=len(results)).tolist()}  # fmt: skip
    return PGDResult(r, robust.min(0).values, results[0].eps, config)
