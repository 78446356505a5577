"""Uncertainty of a stochastic classifier, from the class probabilities of S samples.

Every measure takes probabilities ``probs`` of shape (S, N, C): S weight samples (or
stochastic runs), N inputs, C classes; an (N, C) tensor counts as S = 1. It returns one
score per input, (N,), in float64 and in nats. Higher means more uncertain.

The total uncertainty (predictive entropy) splits into an aleatoric part (expected entropy)
and an epistemic part (mutual information between the prediction and the weights):
``entropy = expected_entropy + mutual_information``.

>>> probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two samples that disagree
>>> mutual_information(probs)  # tensor([0.6931]) = log 2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = [
    "MEASURES",
    "auroc",
    "expected_entropy",
    "least_confidence",
    "mutual_information",
    "predictive_entropy",
    "uncertainty",
]

_SUM_TOL = 1e-3
Scores = torch.Tensor | Sequence[float]


def _samples(probs: torch.Tensor) -> torch.Tensor:
    """Validate ``probs`` and return it as float64 (S, N, C)."""
    if not isinstance(probs, torch.Tensor):
        raise ValueError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    if probs.dim() == 2:
        probs = probs.unsqueeze(0)
    if probs.dim() != 3 or probs.shape[0] == 0 or probs.shape[-1] == 0:
        raise ValueError(
            f"probs must be (N, C) or (S, N, C) with S >= 1 and C >= 1, got {tuple(probs.shape)}"
        )
    p = probs.double()  # p: (S, N, C)
    if torch.isnan(p).any():
        raise ValueError("probs must not contain NaN")
    if (p < 0).any():
        raise ValueError(f"probs must be non-negative, got a minimum of {p.min().item():.3g}")
    if p.numel():
        worst = (p.sum(-1) - 1).abs().max().item()
        if not worst <= _SUM_TOL:  # also catches an infinite entry
            raise ValueError(f"probs rows must sum to 1 within {_SUM_TOL}, got an error of {worst}")
    return p


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy over the last axis in nats, with 0 * log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Total uncertainty: entropy of the mean prediction, H[mean_s p_s], in nats.

    :param probs: class probabilities, (S, N, C) or (N, C).
    :returns: (N,) float64, between 0 and log C.

    >>> predictive_entropy(torch.full((3, 5, 4), 0.25))  # log 4 for each of the 5 inputs
    """
    p = _samples(probs)  # p: (S, N, C)
    return _entropy(p.mean(0))


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Aleatoric uncertainty: mean over samples of each sample's entropy, mean_s H[p_s].

    :param probs: class probabilities, (S, N, C) or (N, C).
    :returns: (N,) float64, in nats.

    >>> expected_entropy(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))  # tensor([0.])
    """
    p = _samples(probs)  # p: (S, N, C)
    return _entropy(p).mean(0)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """Epistemic uncertainty: predictive minus expected entropy, clamped at 0 (BALD).

    It is 0 when every sample predicts the same, and at most log S or log C.

    :param probs: class probabilities, (S, N, C) or (N, C); with S = 1 it is 0.
    :returns: (N,) float64, in nats.

    >>> mutual_information(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))  # tensor([0.6931])
    """
    p = _samples(probs)  # p: (S, N, C)
    return (_entropy(p.mean(0)) - _entropy(p).mean(0)).clamp_min(0.0)


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """One minus the largest mean class probability, 1 - max_c mean_s p_s[c].

    :param probs: class probabilities, (S, N, C) or (N, C).
    :returns: (N,) float64, between 0 and 1 - 1/C.

    >>> least_confidence(torch.tensor([[0.7, 0.3]]))  # tensor([0.3000])
    """
    p = _samples(probs)  # p: (S, N, C)
    return 1.0 - p.mean(0).max(-1).values


# measure name -> function probs (S, N, C) -> (N,), the names uncertainty() and detect() take
MEASURES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "entropy": predictive_entropy,
    "expected_entropy": expected_entropy,
    "mutual_information": mutual_information,
    "max_prob": least_confidence,
}


def uncertainty(probs: torch.Tensor, measure: str = "mutual_information") -> torch.Tensor:
    """The uncertainty measure named ``measure`` (a key of :data:`MEASURES`) of ``probs``.

    :param probs: class probabilities, (S, N, C) or (N, C).
    :param measure: one of 'entropy', 'expected_entropy', 'mutual_information', 'max_prob'
        ('max_prob' scores 1 - the largest mean probability, so higher is more uncertain).
    :returns: (N,) float64.

    >>> uncertainty(probs, "entropy")
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    return MEASURES[measure](probs)


def _scores(values: Scores, name: str) -> torch.Tensor:
    scores = torch.as_tensor(values, dtype=torch.float64)
    if scores.dim() != 1 or len(scores) == 0:
        raise ValueError(f"{name} must be a non-empty 1-d set of scores, got {tuple(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError(f"{name} must not contain NaN")
    return scores


def auroc(scores_a: Scores, scores_b: Scores) -> float:
    """Area under the ROC curve for telling set b (positives) from set a by score.

    It is the probability that a random element of b scores higher than a random element
    of a, ties counting 1/2: the Mann-Whitney U statistic of b over n_a * n_b, computed
    exactly from mid-ranks in O(n log n). 1.0: b always higher; 0.5: no separation.

    :param scores_a: (n_a,) scores of the negatives, e.g. clean inputs.
    :param scores_b: (n_b,) scores of the positives, e.g. adversarial inputs.

    >>> auroc([0.1, 0.2], [0.3, 0.2])  # (1 + 1 + 1 + 0.5) / 4 = 0.875
    """
    a = _scores(scores_a, "scores_a")
    b = _scores(scores_b, "scores_b").to(a.device)
    values = torch.cat([a, b])  # values: (n_a + n_b,)
    ordered, order = torch.sort(values)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    last = counts.cumsum(0)  # 1-based rank of the last member of each tie group
    mid = (2 * last - counts + 1).double() / 2  # mean rank of each tie group
    ranks = torch.empty_like(values)
    ranks[order] = mid[group]
    n_a, n_b = len(a), len(b)
    u_b = ranks[n_a:].sum().item() - n_b * (n_b + 1) / 2
    return u_b / (n_a * n_b)
