"""Guides: the paper's softplus mean-field guide, its initialiser, and one guide factory.

The paper's posterior (Section 2.1, eq. 1) is N(mu, softplus(rho)^2) per weight, the
softplus being the standard deviation as in the authors' code, with a constant ``rho_init`` and
mu drawn from a truncated normal with the prior's mean and standard deviation.
:class:`AutoSoftplusNormal` is exactly that, as a Pyro autoguide. Pyro's own autoguides
drop in through :func:`make_guide` or any ``builder(model) -> guide``; :class:`MCDropout`
makes a net trained with dropout a posterior of the same form::

    guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    guide = make_guide(functools.partial(AutoNormal, init_scale=0.05), bnn)

Where mu starts (:func:`default_init`): with the paper's prior, a :class:`ScaleMixtureNormal`
on every weight, at the authors' truncated normal from that prior
(:func:`init_to_truncated_normal`), so the study trains the paper's nets; with any other
prior at a fresh draw of the net's own torch initialisation (:func:`init_to_net_init`),
which does not depend on how wide the prior is. From a N(0, 1) prior a layer with 50
inputs would start 12 times wider than torch starts it, and a 10-50-2 regression net's
first-epoch NLL would be ~10^6 per datapoint. A likelihood's own latents, such as a
learned noise scale, start at their prior's mean.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable
from contextlib import ExitStack
from operator import attrgetter

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
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.distributions import constraints

from .bnn import BNN
from .priors import ScaleMixtureNormal

__all__ = [
    "DEFAULT_RHO_INIT",
    "GUIDES",
    "AutoSoftplusNormal",
    "MCDropout",
    "SoftplusNormal",
    "check_rho_init",
    "default_init",
    "init_to_net",
    "init_to_net_init",
    "init_to_truncated_normal",
    "make_guide",
]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
DEFAULT_RHO_INIT = -3.0  # our default; Table 3's N = 1 column matches Table 2's rho_init -3
RHO_MIN = -80.0  # softplus(rho) underflows float32 near rho = -88


def check_rho_init(rho_init: float) -> float:
    """``rho_init`` as a float, or a ValueError unless it is finite and >= RHO_MIN.

    :param rho_init: the initial rho of every weight (sigma = softplus(rho_init)).

    >>> check_rho_init(-3)  # -3.0
    """
    if not isinstance(rho_init, (int, float)) or not math.isfinite(rho_init):
        raise ValueError(f"rho_init must be finite, got {rho_init!r}")
    if rho_init < RHO_MIN:
        raise ValueError(f"rho_init must be >= {RHO_MIN} (softplus underflows), got {rho_init}")
    return float(rho_init)


def init_to_truncated_normal(site: dict) -> torch.Tensor:
    """Initial value mean + std * z, z ~ N(0, 1) truncated to [-2, 2], from the site's prior.

    This is Keras' ``TruncatedNormal(mean, stddev)``, which the authors used for mu with
    the paper's scale-mixture prior, and the default for that prior (:func:`default_init`).
    Its spread is the prior's: a wide prior starts the guide wide.

    :param site: a Pyro sample site (its ``"fn"`` is the prior).

    >>> guide = AutoNormal(bnn, init_loc_fn=init_to_truncated_normal)
    """
    fn = site["fn"]
    if not _is_real(fn.support):
        raise ValueError(
            f"site {site['name']!r} is not a real-valued latent; if it is the observation "
            "site, create the guide's parameters without data (pyro_bnn.init_guide(model, "
            "guide), or guide() with no arguments) or pass y with x"
        )
    mean, std = fn.mean, fn.stddev
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ValueError(
            f"the prior of site {site['name']!r} has no finite mean and standard deviation; "
            "pass another init_loc_fn (e.g. pyro.infer.autoguide.init_to_sample)"
        )
    z = nn.init.trunc_normal_(torch.empty(fn.shape()), 0.0, 1.0, -2.0, 2.0)
    return (mean + std * z.to(mean.device)).detach()


def _init_to_prior_mean(site: dict) -> torch.Tensor:
    """The prior's mean where it is finite (a learned noise scale starts at its prior's
    median), else the truncated normal."""
    fn = site["fn"]
    mean = fn.mean
    if _is_real(fn.support) and bool(torch.isfinite(mean).all()):
        return mean.expand(fn.shape()).detach().clone()
    return init_to_truncated_normal(site)


def _reset(module: nn.Module) -> None:
    """Re-initialise ``module`` as torch built it: the outermost modules with a
    ``reset_parameters`` method run it (a module's own init, e.g. :class:`~pyro_bnn.nets.MLP`'s
    Glorot weights and zero biases, wins over its layers'); parameters no such method
    covers keep their values."""
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for child in module.children():
        _reset(child)


def init_to_net_init(model: BNN) -> Callable[[dict], torch.Tensor]:
    """An ``init_loc_fn`` that starts the guide's means where torch starts the net: a fresh
    draw of the net's own initialisation (each module's ``reset_parameters``, e.g. Kaiming
    uniform for ``nn.Linear``), from torch's RNG, so the fit's seed picks it. It does not
    depend on the prior: N(0, 1) and N(0, 0.1) priors start at the same means. Other
    latent sites (a likelihood's learned noise scale) start at their prior's mean. The
    default for every prior but the paper's (:func:`default_init`).

    :param model: the :class:`~pyro_bnn.bnn.BNN` whose guide is being made.

    >>> guide = make_guide("softplus-normal", bnn, init_loc_fn=init_to_net_init(bnn))
    """
    if not isinstance(model, BNN):
        raise ValueError(f"model must be a BNN, got {type(model).__name__}")

    def init(site: dict) -> torch.Tensor:
        if site["name"] != "weights":
            return _init_to_prior_mean(site)
        net = copy.deepcopy(model.net).to("cpu")  # drawn on the CPU: the same on every device
        with torch.no_grad():
            _reset(net)
        return model.flatten(dict(net.named_parameters())).to(site["fn"].mean.device)

    return init


def _paper_prior(model) -> bool:
    """Whether ``model`` is a BNN with one i.i.d. ScaleMixtureNormal (the paper's prior,
    any pi and sigmas) on every weight."""
    prior = getattr(model, "prior", None)
    while isinstance(prior, torch.distributions.Independent):
        prior = prior.base_dist
    return isinstance(model, BNN) and isinstance(prior, ScaleMixtureNormal)


def default_init(model) -> Callable[[dict], torch.Tensor]:
    """The ``init_loc_fn`` every guide of :func:`make_guide` gets unless one is passed.

    - a :class:`~pyro_bnn.bnn.BNN` with the paper's prior, one
      :class:`~pyro_bnn.priors.ScaleMixtureNormal` on every weight (``BayesianMLP()``'s
      default, the study's nets): the weights start at the authors' truncated normal from
      that prior (:func:`init_to_truncated_normal`), as the paper's results were made;
    - a BNN with any other prior: the net's own torch initialisation
      (:func:`init_to_net_init`), whatever the prior's width;
    - any other Pyro model: the truncated normal from each site's prior.

    A BNN's other latent sites (a learned noise scale) start at their prior's mean.

    :param model: the model the guide is for.

    >>> default_init(BNN(net, prior=dist.Normal(0.0, 1.0)))  # the net's own init
    """
    if not isinstance(model, BNN):
        return init_to_truncated_normal
    if not _paper_prior(model):
        return init_to_net_init(model)

    def init(site: dict) -> torch.Tensor:
        if site["name"] == "weights":
            return init_to_truncated_normal(site)
        return _init_to_prior_mean(site)

    return init


def init_to_net(model: BNN, net: nn.Module) -> Callable[[dict], torch.Tensor]:
    """An ``init_loc_fn`` that starts the guide's means at a torch net's weights: a trained
    twin of ``model.net`` (same parameter names and shapes), e.g. to start SVI from a
    pretrained net, or to put fixed weight noise softplus(rho_init) on it.

    :param model: the :class:`~pyro_bnn.bnn.BNN` whose guide is being made.
    :param net: the net whose weights become mu.

    >>> guide = make_guide("softplus-normal", bnn, rho_init=-3.0, init_loc_fn=init_to_net(bnn, net))
    """
    if not isinstance(model, BNN):
        raise ValueError(f"model must be a BNN, got {type(model).__name__}")
    flat = model.flatten(dict(net.named_parameters()))  # (P,)

    def init(site: dict) -> torch.Tensor:
        if site["name"] != "weights":
            raise ValueError(f"init_to_net sets a BNN's 'weights' site, got {site['name']!r}")
        return flat.to(site["fn"].mean.device)

    return init


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
    """N(loc, softplus(rho)^2) with the last ``event_dim`` dims as its event (eq. 1).

    ``rsample`` computes the log density of the value it returns from the noise it drew
    (-log sigma - eps^2 / 2 - log sqrt(2 pi)), which ``log_prob`` then reuses: same value and
    gradient as the textbook formula, at a fraction of the cost. Other values, and draws
    made without gradients (predictions), take the textbook path.

    :param loc: mu, any shape.
    :param rho: rho, broadcastable with ``loc``; sigma = softplus(rho).
    :param event_dim: how many trailing dims form the event.
    :param batch_shape: the batch shape; default the leading dims of loc/rho.
    :param validate_args: as for torch distributions.

    >>> q = SoftplusNormal(torch.zeros(10), torch.full((10,), -3.0), event_dim=1)
    >>> w = q.rsample(); q.log_prob(w)  # w: (10,), log_prob: ()
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
        if not torch.is_grad_enabled():  # a prediction's draw: no ELBO asks for its density
            self._last = None
            return torch.addcmul(self.loc, F.softplus(self.rho), eps)
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
    """The paper's guide (Section 2.1, eq. 1): mean-field N(mu, softplus(rho)^2) per latent.

    Parameters live on the guide as ``locs.<site>`` and ``rhos.<site>`` (Pyro ``PyroParam``s,
    like :class:`~pyro.infer.autoguide.AutoNormal`), so the guide works with
    ``pyro.infer.SVI`` and any ``pyro.optim`` optimiser, under Pyro's global param store or
    module-local parameters, and with torch optimisers over ``guide.parameters()``.
    For a :class:`~pyro_bnn.bnn.BNN` the parameters are created on first use (a call with
    or without data, or ``load_state_dict`` on a fresh guide) from the model's latent sites
    alone, so no data tensor is ever kept in the guide.

    :param model: a Pyro model whose latent sites have real support (e.g. a BNN).
    :param rho_init: the constant initial rho; the paper sweeps -30 ... -1.5.
    :param init_loc_fn: initialiser for mu; default :func:`default_init` (the authors'
        truncated normal with the paper's prior, the net's own init with any other).
    :param create_plates: as for Pyro's autoguides (not needed for a BNN).

    >>> guide = AutoSoftplusNormal(bnn, rho_init=-3.0)
    >>> svi = pyro.infer.SVI(bnn, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    """

    def __init__(
        self,
        model,
        *,
        rho_init: float = DEFAULT_RHO_INIT,
        init_loc_fn: Callable | None = None,
        create_plates=None,
    ):
        self.rho_init = check_rho_init(rho_init)
        self._bnn = isinstance(model, BNN)
        init_loc_fn = default_init(model) if init_loc_fn is None else init_loc_fn
        super().__init__(InitMessenger(init_loc_fn)(model), create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs) -> None:
        if self._bnn:  # the latent sites need no data; a data batch would stay in the trace
            args, kwargs = (), {}
        with torch.no_grad():
            super()._setup_prototype(*args, **kwargs)
        self._sites: list[tuple[str, int]] = []
        self.locs, self.rhos = PyroModule(), PyroModule()
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
            event_dim = site["fn"].event_dim
            self._sites.append((name, event_dim))
            deep_setattr(self.locs, name, PyroParam(loc.clone(), constraints.real, event_dim))
            rho = torch.full_like(loc, self.rho_init)
            deep_setattr(self.rhos, name, PyroParam(rho, constraints.real, event_dim))

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, event_dim in self._sites:
            site = self.prototype_trace.nodes[name]
            loc, rho = attrgetter(name)(self.locs), attrgetter(name)(self.rhos)
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, SoftplusNormal(loc, rho, event_dim))
        return result

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.prototype_trace is None and self._bnn:  # a fresh guide: create its parameters
            self._setup_prototype()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior mean (= median) of each latent site."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return {name: attrgetter(name)(self.locs).detach() for name, _ in self._sites}

    @torch.no_grad()
    def scales(self) -> dict[str, torch.Tensor]:
        """softplus(rho) of each latent site."""
        return {name: F.softplus(attrgetter(name)(self.rhos)) for name, _ in self._sites}


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x)) if x < 30 else x


def softplus_normal(
    model, *, rho_init: float = DEFAULT_RHO_INIT, init_loc_fn: Callable | None = None
) -> AutoGuide:
    """The paper's guide, :class:`AutoSoftplusNormal`."""
    return AutoSoftplusNormal(model, rho_init=rho_init, init_loc_fn=init_loc_fn)


def normal(
    model, *, rho_init: float = DEFAULT_RHO_INIT, init_loc_fn: Callable | None = None
) -> AutoGuide:
    """Pyro's AutoNormal with init_scale = softplus(rho_init)."""
    scale = _softplus(check_rho_init(rho_init))
    init_loc_fn = default_init(model) if init_loc_fn is None else init_loc_fn
    return AutoNormal(model, init_loc_fn=init_loc_fn, init_scale=scale)


def lowrank(
    model,
    *,
    rho_init: float = DEFAULT_RHO_INIT,
    rank: int = 10,
    init_loc_fn: Callable | None = None,
) -> AutoGuide:
    """Pyro's AutoLowRankMultivariateNormal with init_scale = softplus(rho_init)."""
    scale = _softplus(check_rho_init(rho_init))
    init_loc_fn = default_init(model) if init_loc_fn is None else init_loc_fn
    return AutoLowRankMultivariateNormal(
        model, init_loc_fn=init_loc_fn, rank=rank, init_scale=scale
    )


def delta(model, *, init_loc_fn: Callable | None = None) -> AutoGuide:
    """Pyro's AutoDelta: a point estimate (MAP)."""
    init_loc_fn = default_init(model) if init_loc_fn is None else init_loc_fn
    return AutoDelta(model, init_loc_fn=init_loc_fn)


# guide name -> builder(model, **kwargs), the names make_guide and the CLI accept
GUIDES: dict[str, Callable[..., AutoGuide]] = {
    "softplus-normal": softplus_normal,
    "normal": normal,
    "lowrank": lowrank,
    "delta": delta,
}


def _accepts(builder: Callable, name: str) -> bool:
    """Whether ``builder`` takes keyword ``name`` and has not already bound it."""
    if isinstance(builder, functools.partial) and name in builder.keywords:
        return False
    try:
        return name in inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False


def make_guide(spec: str | Callable[..., AutoGuide], model, **kwargs) -> AutoGuide:
    """Build a guide for ``model`` from a name in :data:`GUIDES` or a builder callable.

    Names: 'softplus-normal' (the paper's, default), 'normal' (Pyro's AutoNormal with
    init_scale = softplus(rho_init)), 'lowrank' (AutoLowRankMultivariateNormal), 'delta'
    (AutoDelta, i.e. MAP). All start mu from :func:`default_init` unless ``init_loc_fn``
    is passed: the authors' truncated normal with the paper's scale-mixture prior, the
    net's own torch initialisation with any other prior.

    A builder ``builder(model, **kwargs) -> guide`` (e.g. a Pyro autoguide class or a
    ``functools.partial`` of one) gets the same initialisation as the names where it takes
    the arguments and does not bind them itself: ``init_loc_fn`` (:func:`default_init`)
    and ``init_scale`` = softplus(``rho_init``, default -3). Every guide creates its
    parameters on first use; :func:`~pyro_bnn.bnn.init_guide` does it from the model's
    latent sites alone, without data.

    :param spec: a guide name or a builder.
    :param model: the model, e.g. a :class:`~pyro_bnn.bnn.BNN`.
    :param kwargs: the guide's arguments (``rho_init``, ``rank``, ...).

    >>> guide = make_guide("softplus-normal", bnn, rho_init=-3.0)
    >>> guide = make_guide(functools.partial(AutoLowRankMultivariateNormal, rank=5), bnn)
    """
    recipe = (spec, dict(kwargs))
    if isinstance(spec, str):
        if spec not in GUIDES:
            raise ValueError(f"unknown guide {spec!r}; known guides: {', '.join(GUIDES)}")
        builder = GUIDES[spec]
        known = [n for n in inspect.signature(builder).parameters if n != "model"]
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ValueError(
                f"guide {spec!r} takes no argument {', '.join(unknown)}; "
                f"it takes: {', '.join(known)}"
            )
        guide = builder(model, **kwargs)
    elif callable(spec):
        rho_init = kwargs.pop("rho_init", DEFAULT_RHO_INIT)
        if _accepts(spec, "init_loc_fn") and "init_loc_fn" not in kwargs:
            kwargs["init_loc_fn"] = default_init(model)
        if _accepts(spec, "init_scale") and "init_scale" not in kwargs:
            kwargs["init_scale"] = _softplus(check_rho_init(rho_init))
        guide = spec(model, **kwargs)
    else:
        raise ValueError(f"guide must be a name or a builder callable, got {spec!r}")
    guide.recipe = recipe  # how to rebuild it: pyro_bnn.artifacts.save_bnn stores this
    return guide


class MCDropout(nn.Module):
    """MC dropout (Gal & Ghahramani, 2016) as a guide: every draw of the weights site is
    ``weights`` with each input of every 2-d weight matrix (every linear layer) dropped with
    probability ``rate`` and the rest scaled by 1 / (1 - rate), the draw's mask shared by
    the whole batch as any posterior's weight draw is. Each example's predictive is that of
    dropout on the input of every layer; the draws vectorise like any other guide's.

    :param model: the :class:`~pyro_bnn.bnn.BNN` whose net was trained with that dropout.
    :param weights: the trained net's flat weights (P,), e.g. ``model.flatten(params)``.
    :param rate: the dropout rate, in (0, 1).

    >>> guide = MCDropout(bnn, bnn.flatten(dict(net.named_parameters())), rate=0.2)
    >>> probs = sampler(bnn, guide, ensemble=100)(x, 1)  # (1, N, C)
    """

    site_names = ("weights",)

    def __init__(self, model: BNN, weights: torch.Tensor, rate: float) -> None:
        super().__init__()
        if not 0 < rate < 1:
            raise ValueError(f"rate must be in (0, 1), got {rate}")
        if weights.shape != (model.num_params,):
            raise ValueError(
                f"weights must have shape ({model.num_params},), the net's parameter count, "
                f"got {tuple(weights.shape)}"
            )
        self.model_shapes, self.sizes = dict(model.shapes), list(model.sizes)
        self.rate = rate
        self.register_buffer("weights", weights.detach().clone())

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        chunks = self.weights.split(self.sizes)
        keep = 1.0 - self.rate
        out = []
        for i, (shape, chunk) in enumerate(zip(self.model_shapes.values(), chunks)):
            if len(shape) != 2:  # biases (and any other parameter) are not dropped
                out.append(chunk)
                continue
            probs = chunk.new_full(shape[1:], keep)
            mask = pyro.sample(  # (*S, in) under Predictive's vectorised plate
                f"_dropout_mask{i}", dist.Bernoulli(probs).to_event(1),
                infer={"is_auxiliary": True},
            )  # fmt: skip
            w = chunk.view(shape) * mask.unsqueeze(-2) / keep  # (*S, out, in)
            out.append(w.flatten(-2))
        lead = torch.broadcast_shapes(*(c.shape[:-1] for c in out))
        flat = torch.cat([c.expand(*lead, c.shape[-1]) for c in out], -1)  # (*S, P)
        return {"weights": pyro.sample("weights", dist.Delta(flat, event_dim=1))}

    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The weights as trained: the net with dropout off (weight scaling)."""
        return {"weights": self.weights}
