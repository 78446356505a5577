"""Signal-to-noise pruning of a trained softplus mean-field guide (the paper's Section 6).

SNR = ``|mu| / softplus(rho)`` per weight. The lowest ``rate`` fraction is removed, ranked

- ``"global"``: over all weights and biases at once (what the paper's text says), or
- ``"tensor"``: within each weight matrix and bias vector separately (the authors' code).

A removed weight gets mu = 0 and sigma = 0 exactly (the authors set mu = 0, rho = -100,
i.e. sigma ~ 4e-44), so every posterior sample has it at zero.
"""

from __future__ import annotations

import torch

from .bnn import BNN, init_guide
from .guides import AutoSoftplusNormal

__all__ = ["SCOPES", "prune", "prune_mask", "snr"]

SCOPES = ("global", "tensor")  # how weights are ranked: see the module docstring
LOC, RHO = "locs.weights_unconstrained", "rhos.weights_unconstrained"  # the guide's state keys


def _check(guide, rate: float, scope: str) -> None:
    if not isinstance(guide, AutoSoftplusNormal):
        raise ValueError(f"pruning needs an AutoSoftplusNormal guide, got {type(guide).__name__}")
    if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(f"rate must lie in [0, 1), got {rate!r}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known scopes: {', '.join(SCOPES)}")


@torch.no_grad()
def snr(model: BNN, guide: AutoSoftplusNormal) -> torch.Tensor:
    """The signal-to-noise ratio ``|mu| / sigma`` of every weight (Section 6): (P,).

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted :class:`~pyro_bnn.guides.AutoSoftplusNormal`.

    >>> ratio = snr(bnn, guide)  # (P,)
    """
    init_guide(model, guide)
    return guide.median()["weights"].abs() / guide.scales()["weights"]


def _lowest(values: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean mask of the round(rate * n) smallest entries."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    k = round(rate * values.numel())
    mask[torch.argsort(values, stable=True)[:k]] = True
    return mask


@torch.no_grad()
def prune_mask(
    model: BNN, guide: AutoSoftplusNormal, rate: float, scope: str = "global"
) -> torch.Tensor:
    """(P,) bool, True where a weight is removed.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted :class:`~pyro_bnn.guides.AutoSoftplusNormal`.
    :param rate: the fraction of weights removed, in [0, 1).
    :param scope: 'global' or 'tensor' (see the module docstring).

    >>> removed = prune_mask(bnn, guide, 0.5)  # removed.sum() == round(0.5 * P)
    """
    _check(guide, rate, scope)
    values = snr(model, guide)
    if scope == "global":
        return _lowest(values, rate)
    return torch.cat([_lowest(chunk, rate) for chunk in values.split(model.sizes)])


@torch.no_grad()
def prune(
    model: BNN, guide: AutoSoftplusNormal, rate: float, scope: str = "global"
) -> AutoSoftplusNormal:
    """A copy of ``guide`` with the lowest-SNR ``rate`` fraction of weights set to exactly 0
    (Section 6, Table 4).

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param guide: its fitted :class:`~pyro_bnn.guides.AutoSoftplusNormal`; left unchanged.
    :param rate: the fraction of weights removed, in [0, 1).
    :param scope: 'global' (the paper's text) or 'tensor' (the authors' code).

    >>> pruned = prune(bnn, guide, 0.75, scope="tensor")
    >>> probs = ensemble_fn(bnn, pruned, size=100)(x)
    """
    removed = prune_mask(model, guide, rate, scope)
    state = {k: v.clone() for k, v in guide.state_dict().items()}
    loc, rho = state[LOC], state[RHO]
    loc[removed] = 0.0
    rho[removed] = -float("inf")  # softplus(-inf) = 0
    pruned = AutoSoftplusNormal(model, rho_init=guide.rho_init)
    init_guide(model, pruned)
    pruned.load_state_dict(state)
    return pruned.to(loc.device)
