"""The Bayesian MLP: a Pyro model over the flat weight vector of the shared MLP.

All weights and biases form one latent site, ``"weights"`` of shape (P,), laid out in the
order of :func:`pyro_bnn.nets.param_shapes`; :meth:`BayesianMLP.unflatten` turns it back
into named tensors (a state dict for :class:`pyro_bnn.nets.MLP`). One site instead of one
per tensor keeps Pyro's per-site overhead out of the SVI step; per-layer priors still work
through :func:`pyro_bnn.priors.pack_prior`.

The forward pass takes leading sample dims: with weights of shape (*S, P) the logits come
out (*S, N, C), which is what ``Predictive(parallel=True)`` and vectorised ELBO particles
need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule

from .nets import IN_FEATURES, arch_name, mlp_forward, param_shapes, parse_arch
from .priors import PriorSpec, ScaleMixtureNormal, pack_prior

__all__ = ["BayesianMLP", "DatapointELBO", "check_inputs", "init_guide"]


def check_inputs(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    in_features: int = IN_FEATURES,
    check_finite: bool = True,
) -> None:
    """Raise ValueError naming ``x`` or ``y`` on a wrong shape, dtype or NaN."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() != 2 or x.shape[-1] != in_features:
        raise ValueError(f"x must have shape (N, {in_features}), got {tuple(x.shape)}")
    if check_finite and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long:
            raise ValueError(
                f"y must be an int64 tensor of labels, got {getattr(y, 'dtype', type(y))}"
            )
        if y.shape != x.shape[:1]:
            raise ValueError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")


class BayesianMLP(PyroModule):
    """Pyro model of a ReLU MLP with a prior on every weight and bias.

    Args:
        widths: layer widths or an arch name, e.g. ``(100, 100, 10)`` or 'FC-100-100-10'.
        prior: a prior spec (see :mod:`pyro_bnn.priors`); default the paper's
            ScaleMixtureNormal(0.5, e^-1, e^-7) on every weight and bias.
        in_features: input dimension (784 for MNIST).

    Call signature ``model(x, y=None, num_data=None)`` with x (N, D) and y (N,). The
    likelihood plate has size ``num_data`` (the training-set size) and subsamples the
    given minibatch, so log-likelihoods are scaled by num_data / N.

    >>> bnn = BayesianMLP("FC-100-100-10")
    >>> bnn = BayesianMLP((100, 10), prior=pyro.distributions.Normal(0.0, 1.0))
    """

    def __init__(
        self,
        widths: Sequence[int] | str = (100, 100, 10),
        *,
        prior: PriorSpec | None = None,
        in_features: int = IN_FEATURES,
    ) -> None:
        super().__init__()
        self.widths = parse_arch(widths)
        self.in_features = in_features
        self.shapes = param_shapes(self.widths, in_features)
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.num_params = sum(self.sizes)
        self.prior = pack_prior(ScaleMixtureNormal() if prior is None else prior, self.shapes)

    @property
    def arch(self) -> str:
        return arch_name(self.widths)

    def unflatten(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """(*S, P) flat weights -> {name: (*S, *shape)} views."""
        if weights.shape[-1] != self.num_params:
            raise ValueError(f"weights must end in {self.num_params}, got {tuple(weights.shape)}")
        chunks = weights.split(self.sizes, dim=-1)
        return {
            name: chunk.unflatten(-1, shape)
            for (name, shape), chunk in zip(self.shapes.items(), chunks)
        }

    def logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (N, D) and weights (*S, P) -> logits (*S, N, C)."""
        named = list(self.unflatten(weights).values())
        return mlp_forward(x, list(zip(named[::2], named[1::2])))

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> torch.Tensor:
        check_inputs(x, y, self.in_features, check_finite=False)
        n = x.shape[0]
        if num_data is not None and num_data < n:
            raise ValueError(f"num_data must be >= the batch size {n}, got {num_data}")
        weights = pyro.sample("weights", self.prior)  # (P,), or (*S, 1, P) under plates
        if weights.dim() > 1:  # drop the singleton of the data plate: (*S, P)
            weights = weights.squeeze(-2)
        logits = self.logits(x, weights)  # (*S, N, C)
        with pyro.plate("data", num_data or n, subsample=torch.arange(n, device=x.device)):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits


def init_guide(model: BayesianMLP, guide) -> None:
    """Create an autoguide's parameters if it has none yet, on a dummy labelled example
    (with labels, so that ``obs`` is observed and stays out of the guide)."""
    if getattr(guide, "prototype_trace", True) is None:
        with torch.no_grad():
            guide(torch.zeros(1, model.in_features), torch.zeros(1, dtype=torch.long), num_data=1)


class DatapointELBO(Trace_ELBO):
    """Trace_ELBO divided by the training-set size ``num_data``: the loss per datapoint.

    With the plate scaling of :class:`BayesianMLP` this is
    mean minibatch NLL + KL(q || p) / num_data (a Monte Carlo KL), the scale on which the
    paper's SGD learning rate of 1e-3 is stable. After each ``differentiable_loss`` call,
    :attr:`parts` holds the detached per-datapoint {'elbo', 'nll', 'kl'} of that estimate.
    """

    def __init__(self, num_data: int, **kwargs) -> None:
        if not isinstance(num_data, int) or num_data < 1:
            raise ValueError(f"num_data must be a positive integer, got {num_data!r}")
        super().__init__(**kwargs)
        self.num_data = num_data
        self.parts: dict[str, torch.Tensor] = {}
        self._nll = 0.0

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        nll = sum(
            -site["log_prob_sum"].detach()
            for site in model_trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
        self._nll = self._nll + nll / self.num_particles
        return loss / self.num_data, surrogate / self.num_data

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        self._nll = 0.0
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        nll = self._nll / self.num_data
        self.parts = {"elbo": -loss.detach(), "nll": nll, "kl": loss.detach() - nll}
        return loss
