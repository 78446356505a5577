"""Guides: the paper's softplus mean-field guide, its initialiser, and one guide factory.

The paper's posterior is N(mu, softplus(rho)^2) per weight with a constant ``rho_init`` and
mu drawn from a truncated normal with the prior's mean and standard deviation.
:class:`AutoSoftplusNormal` is exactly that, as a Pyro autoguide. Pyro's own autoguides
drop in through :func:`make_guide` or any ``builder(model) -> guide``::

    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    guide = make_guide(functools.partial(AutoNormal, init_scale=0.05), bnn)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer.autoguide import (
    AutoDelta,
    AutoGuide,
    AutoLowRankMultivariateNormal,
    AutoNormal,
)
from pyro.infer.autoguide.initialization import InitMessenger
from torch import nn
from torch.distributions import constraints

__all__ = [
    "GUIDES",
    "AutoSoftplusNormal",
    "SoftplusNormal",
    "check_rho_init",
    "init_to_truncated_normal",
    "make_guide",
]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
RHO_MIN = -80.0  # softplus(rho) underflows float32 near rho = -88


def check_rho_init(rho_init: float) -> float:
    if not isinstance(rho_init, (int, float)) or not math.isfinite(rho_init):
        raise ValueError(f"rho_init must be finite, got {rho_init!r}")
    if rho_init < RHO_MIN:
        raise ValueError(f"rho_init must be >= {RHO_MIN} (softplus underflows), got {rho_init}")
    return float(rho_init)


def init_to_truncated_normal(site: dict) -> torch.Tensor:
    """Initial value mean + std * z, z ~ N(0, 1) truncated to [-2, 2], from the site's prior.

    This is Keras' ``TruncatedNormal(mean, stddev)``, which the authors used for mu.
    """
    fn = site["fn"]
    mean, std = fn.mean, fn.stddev
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ValueError(
            f"the prior of site {site['name']!r} has no finite mean and standard deviation; "
            "pass another init_loc_fn (e.g. pyro.infer.autoguide.init_to_sample)"
        )
    z = nn.init.trunc_normal_(torch.empty(fn.shape()), 0.0, 1.0, -2.0, 2.0)
    return (mean + std * z.to(mean.device)).detach()


class _SoftplusNormalSample(torch.autograd.Function):
    """(loc, rho, eps) -> (w = loc + softplus(rho) * eps, log q(w) summed over the event).

    Backward by hand: dw/dloc = 1, dw/drho = sigmoid(rho) * eps, dlogq/drho = -sigmoid(rho) /
    softplus(rho); the log-density's dependence on w through eps cancels exactly.
    """

    @staticmethod
    def forward(ctx, loc, rho, eps, event_dim):
        sigma = F.softplus(rho)
        value = torch.addcmul(loc, sigma, eps)
        dims = tuple(range(-event_dim, 0))
        log_sigma = sigma.log()
        sq = eps.square()
        if dims:
            log_sigma, sq = log_sigma.sum(dims), sq.sum(dims)
        n = math.prod(eps.shape[eps.dim() - event_dim :])
        log_q = sq.mul_(-0.5).sub_(log_sigma).sub_(n * LOG_SQRT_2PI)
        ctx.save_for_backward(rho, sigma, eps)
        ctx.event_dim = event_dim
        ctx.loc_shape = loc.shape
        return value, log_q

    @staticmethod
    def backward(ctx, grad_value, grad_log_q):
        rho, sigma, eps = ctx.saved_tensors
        grad_log_q = grad_log_q.reshape(grad_log_q.shape + (1,) * ctx.event_dim)
        grad_sigma = (grad_value * eps - grad_log_q / sigma).sum_to_size(rho.shape)
        grad_rho = grad_sigma.mul_(torch.sigmoid(rho))
        return grad_value.sum_to_size(ctx.loc_shape), grad_rho, None, None


class SoftplusNormal(dist.TorchDistribution):
    """N(loc, softplus(rho)^2) with the last ``event_dim`` dims as its event.

    ``rsample`` computes the log density of the value it returns from the noise it drew
    (-log sigma - eps^2 / 2 - log sqrt(2 pi)), which ``log_prob`` then reuses: same value and
    gradient as the textbook formula, at a fraction of the cost. Other values take the
    textbook path.
    """

    arg_constraints = {"loc": constraints.real, "rho": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, rho, event_dim: int = 0, batch_shape=None, validate_args=None):
        self.loc, self.rho = loc, rho
        shape = torch.broadcast_shapes(loc.shape, rho.shape)
        split = len(shape) - event_dim
        batch = shape[:split] if batch_shape is None else torch.Size(batch_shape)
        self._event_dims = tuple(range(-event_dim, 0))
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(batch, shape[split:], validate_args=validate_args)

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.rho)

    def expand(self, batch_shape, _instance=None) -> SoftplusNormal:
        return SoftplusNormal(
            self.loc, self.rho, len(self.event_shape), batch_shape, validate_args=False
        )

    def _sum_event(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum(self._event_dims) if self._event_dims else t

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        eps = torch.randn(
            self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device
        )
        value, log_q = _SoftplusNormalSample.apply(self.loc, self.rho, eps, len(self.event_shape))
        self._last = (value, log_q)
        return value

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._last is not None and value is self._last[0]:
            return self._last[1]
        if self._validate_args:
            self._validate_sample(value)
        scale = self.scale
        z = (value - self.loc) / scale
        return self._sum_event(-scale.log() - 0.5 * z.square() - LOG_SQRT_2PI)

    def entropy(self) -> torch.Tensor:
        per_weight = self.scale.log() + 0.5 + LOG_SQRT_2PI
        return self._sum_event(per_weight).expand(self.batch_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.expand(self.shape())

    @property
    def variance(self) -> torch.Tensor:
        return self.scale.square().expand(self.shape())


def _is_real(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


class AutoSoftplusNormal(AutoGuide):
    """The paper's guide: mean-field N(mu, softplus(rho)^2) over every latent site.

    Args:
        model: a Pyro model whose latent sites have real support (e.g. a BayesianMLP).
        rho_init: the constant initial rho; the paper sweeps -30 ... -1.5.
        init_loc_fn: initialiser for mu; default: truncated normal from the prior.

    >>> guide = AutoSoftplusNormal(BayesianMLP(), rho_init=-3.0)
    """

    def __init__(
        self,
        model,
        *,
        rho_init: float = -3.0,
        init_loc_fn: Callable = init_to_truncated_normal,
        create_plates=None,
    ):
        self.rho_init = check_rho_init(rho_init)
        super().__init__(InitMessenger(init_loc_fn)(model), create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        self._sites: list[tuple[str, int]] = []
        self.locs, self.rhos = nn.ParameterList(), nn.ParameterList()
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if not _is_real(site["fn"].support):
                raise ValueError(
                    f"AutoSoftplusNormal needs real support; site {name!r} has "
                    f"{site['fn'].support}; use AutoNormal"
                )
            for frame in site["cond_indep_stack"]:
                if (frame.full_size or frame.size) != frame.size:
                    raise ValueError(f"site {name!r} is subsampled; use AutoNormal")
            loc = site["value"].detach()
            self._sites.append((name, site["fn"].event_dim))
            self.locs.append(nn.Parameter(loc.clone()))
            self.rhos.append(nn.Parameter(torch.full_like(loc, self.rho_init)))

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for (name, event_dim), loc, rho in zip(self._sites, self.locs, self.rhos):
            site = self.prototype_trace.nodes[name]
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, SoftplusNormal(loc, rho, event_dim))
        return result

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior mean (= median) of each latent site."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return {name: loc.detach() for (name, _), loc in zip(self._sites, self.locs)}

    @torch.no_grad()
    def scales(self) -> dict[str, torch.Tensor]:
        """softplus(rho) of each latent site."""
        return {name: F.softplus(rho) for (name, _), rho in zip(self._sites, self.rhos)}


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x)) if x < 30 else x


GUIDES: dict[str, Callable[..., AutoGuide]] = {
    "softplus-normal": lambda model, rho_init=-3.0, init_loc_fn=init_to_truncated_normal: (
        AutoSoftplusNormal(model, rho_init=rho_init, init_loc_fn=init_loc_fn)
    ),
    "normal": lambda model, rho_init=-3.0, init_loc_fn=init_to_truncated_normal: AutoNormal(
        model, init_loc_fn=init_loc_fn, init_scale=_softplus(check_rho_init(rho_init))
    ),
    "lowrank": lambda model, rho_init=-3.0, rank=10, init_loc_fn=init_to_truncated_normal: (
        AutoLowRankMultivariateNormal(
            model,
            init_loc_fn=init_loc_fn,
            rank=rank,
            init_scale=_softplus(check_rho_init(rho_init)),
        )
    ),
    "delta": lambda model, init_loc_fn=init_to_truncated_normal: AutoDelta(
        model, init_loc_fn=init_loc_fn
    ),
}


def make_guide(spec: str | Callable[..., AutoGuide], model, **kwargs) -> AutoGuide:
    """Build a guide for ``model`` from a name in :data:`GUIDES` or a builder callable.

    Names: 'softplus-normal' (the paper's, default), 'normal' (Pyro's AutoNormal with
    init_scale = softplus(rho_init)), 'lowrank' (AutoLowRankMultivariateNormal), 'delta'
    (AutoDelta, i.e. MAP). All start mu from the truncated-normal initialiser.
    """
    if isinstance(spec, str):
        if spec not in GUIDES:
            raise ValueError(f"unknown guide {spec!r}; known guides: {', '.join(GUIDES)}")
        return GUIDES[spec](model, **kwargs)
    if not callable(spec):
        raise ValueError(f"guide must be a name or a builder callable, got {spec!r}")
    return spec(model, **kwargs)
