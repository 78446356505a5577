"""Weight priors: the paper's scale mixture, and the builders that turn any prior spec into
one distribution over the flat weight vector of a :class:`~pyro_bnn.bnn.BayesianMLP`.

A *prior spec* is any of:

- a univariate Pyro/torch distribution, used i.i.d. for every weight and bias;
- a mapping from parameter names or glob patterns (``"layers.0.*"``) to distributions,
  first match wins, so priors can differ per layer or per parameter;
- a callable ``(name, shape) -> distribution``.

A per-parameter distribution may be univariate (expanded to the parameter's shape) or have
``event_shape == shape``; its support must be the whole real line. Every key of a mapping
must match some parameter.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping

import pyro.distributions as dist
import torch
from torch.distributions import constraints

__all__ = [
    "PRIORS",
    "PackedPrior",
    "PriorSpec",
    "ScaleMixtureNormal",
    "make_prior",
    "pack_prior",
]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class _MixtureLogProb(torch.autograd.Function):
    """Elementwise logaddexp(c1 - h1 w^2, c2 - h2 w^2) with a hand-written backward:
    d/dw = -2 w (h2 + r (h1 - h2)), r = sigmoid(a - b) the first component's share."""

    @staticmethod
    def forward(ctx, w, c1, h1, c2, h2):
        w2 = w.square()
        a = w2.mul(-h1).add_(c1)
        b = w2.mul_(-h2).add_(c2)
        out = torch.logaddexp(a, b)
        ctx.save_for_backward(w, a.sub_(b))
        ctx.h = (h1, h2)
        return out

    @staticmethod
    def backward(ctx, grad):
        w, d = ctx.saved_tensors
        h1, h2 = ctx.h
        slope = torch.sigmoid(d).mul_(h1 - h2).add_(h2).mul_(w).mul_(-2.0)
        return slope.mul_(grad), None, None, None, None


class ScaleMixtureNormal(dist.TorchDistribution):
    """The paper's prior (Section 2.1, eq. 2): ``pi * N(0, sigma1^2) + (1 - pi) * N(0, sigma2^2)``.

    Defaults are the paper's (Section 3.2). The parameters are Python floats, so the
    distribution lives on every device. ``log_prob`` is a logsumexp of the two component
    log densities, exact from w = 0 to ``|w| = 1e3`` and beyond.

    :param pi: weight of the first component, in (0, 1); default 0.5.
    :param sigma1: standard deviation of the first component; default e^-1.
    :param sigma2: standard deviation of the second component; default e^-7.
    :param batch_shape: the batch shape; default () (univariate).
    :param validate_args: as for torch distributions.

    >>> prior = ScaleMixtureNormal()           # univariate
    >>> prior.expand([100, 784]).to_event(2)   # one layer's weight matrix
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        pi: float = 0.5,
        sigma1: float = math.exp(-1),
        sigma2: float = math.exp(-7),
        batch_shape: torch.Size | tuple = torch.Size(),
        validate_args: bool | None = None,
    ) -> None:
        for name, value in (("pi", pi), ("sigma1", sigma1), ("sigma2", sigma2)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float, got {value!r}")
        if not 0 < pi < 1:
            raise ValueError(f"pi must lie in (0, 1), got {pi}")
        if sigma1 <= 0 or sigma2 <= 0:
            raise ValueError(f"sigma1 and sigma2 must be > 0, got {sigma1}, {sigma2}")
        self.pi, self.sigma1, self.sigma2 = float(pi), float(sigma1), float(sigma2)
        # log N(w; 0, s^2) = c - h * w^2 for each component, plus its log weight
        self._c1 = math.log(pi) - math.log(sigma1) - LOG_SQRT_2PI
        self._c2 = math.log1p(-pi) - math.log(sigma2) - LOG_SQRT_2PI
        self._h1, self._h2 = 0.5 / sigma1**2, 0.5 / sigma2**2
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> ScaleMixtureNormal:
        return ScaleMixtureNormal(
            self.pi, self.sigma1, self.sigma2, torch.Size(batch_shape), validate_args=False
        )

    @property
    def mean(self) -> torch.Tensor:
        return torch.zeros(self.batch_shape)

    @property
    def variance(self) -> torch.Tensor:
        var = self.pi * self.sigma1**2 + (1 - self.pi) * self.sigma2**2
        return torch.full(self.batch_shape, var)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        wide = torch.rand(shape) < self.pi
        scale = torch.where(wide, self.sigma1, self.sigma2)
        return torch.randn(shape) * scale

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return _MixtureLogProb.apply(value, self._c1, self._h1, self._c2, self._h2)

    def __repr__(self) -> str:
        return (
            f"ScaleMixtureNormal(pi={self.pi:g}, sigma1={self.sigma1:g}, "
            f"sigma2={self.sigma2:g}, batch_shape={tuple(self.batch_shape)})"
        )


class PackedPrior(dist.TorchDistribution):
    """Independent per-parameter priors laid end to end over a flat vector (event (P,)).

    :param parts: ``(shape, distribution)`` pairs with ``event_shape == shape``, in the
        order of the flat layout.
    :param validate_args: as for torch distributions.

    >>> prior = PackedPrior([((3,), dist.Normal(0.0, 1.0).expand([3]).to_event(1))])
    """

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, parts: list[tuple[tuple, dist.Distribution]], validate_args=None):
        self.parts = parts
        self.sizes = [math.prod(shape) for shape, _ in parts]
        super().__init__(torch.Size(), torch.Size([sum(self.sizes)]), validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for (shape, prior), chunk in zip(self.parts, value.split(self.sizes, dim=-1)):
            total = total + prior.log_prob(chunk.unflatten(-1, shape))
        return total

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        return torch.cat(
            [prior.sample(sample_shape).reshape(*sample_shape, -1) for _, prior in self.parts],
            dim=-1,
        )

    def _cat(self, attr: str) -> torch.Tensor:
        return torch.cat(
            [getattr(prior, attr).expand(shape).reshape(-1) for shape, prior in self.parts]
        )

    @property
    def mean(self) -> torch.Tensor:
        return self._cat("mean")

    @property
    def variance(self) -> torch.Tensor:
        return self._cat("variance")


# a prior spec (see the module docstring): one distribution, a name/glob mapping, or a callable
PriorSpec = (
    dist.Distribution | Mapping[str, dist.Distribution] | Callable[[str, tuple], dist.Distribution]
)

# prior name -> constructor of a univariate prior, the names make_prior and the CLI accept
PRIORS: dict[str, Callable[..., dist.Distribution]] = {
    "scale-mixture": ScaleMixtureNormal,
    "normal": lambda loc=0.0, scale=1.0: dist.Normal(float(loc), float(scale)),
    "laplace": lambda loc=0.0, scale=1.0: dist.Laplace(float(loc), float(scale)),
    "student-t": lambda df=3.0, loc=0.0, scale=1.0: dist.StudentT(
        float(df), float(loc), float(scale)
    ),
}


def make_prior(name: str, **kwargs) -> dist.Distribution:
    """A univariate prior by name: 'scale-mixture' (the paper's), 'normal', 'laplace',
    'student-t'.

    :param name: a key of :data:`PRIORS`.
    :param kwargs: its constructor's arguments (``pi``/``sigma1``/``sigma2``, ``loc``/``scale``,
        ``df``).

    >>> make_prior("normal", scale=0.1), make_prior("scale-mixture", pi=0.25)
    """
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; known priors: {', '.join(PRIORS)}")
    return PRIORS[name](**kwargs)


def _check_real(prior: dist.Distribution, what: str) -> None:
    """Raise ValueError naming ``what`` unless ``prior``'s support is the whole real line."""
    try:
        support = prior.support
    except NotImplementedError:
        support = None
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    if base is not constraints.real:
        raise ValueError(
            f"{what} must have the whole real line as support (a weight can take any value), "
            f"got {type(prior).__name__} with support {support}; use e.g. Normal, Laplace, "
            "StudentT or ScaleMixtureNormal"
        )


def _for_param(prior: dist.Distribution, name: str, shape: tuple) -> dist.Distribution:
    if not isinstance(prior, dist.Distribution):
        raise ValueError(f"prior for {name!r} must be a torch/Pyro distribution, got {prior!r}")
    _check_real(prior, f"prior for {name!r}")
    if tuple(prior.event_shape) == tuple(shape) and not prior.batch_shape:
        return prior
    if prior.event_shape or prior.batch_shape:
        raise ValueError(
            f"prior for {name!r} must be univariate or have event_shape {tuple(shape)}, "
            f"got batch {tuple(prior.batch_shape)} event {tuple(prior.event_shape)}"
        )
    return prior.expand(shape).to_event(len(shape)) if shape else prior


def _lookup(spec: Mapping[str, dist.Distribution], name: str) -> dist.Distribution:
    if name in spec:
        return spec[name]
    for pattern, prior in spec.items():
        if fnmatch.fnmatchcase(name, pattern):
            return prior
    raise ValueError(f"prior mapping has no entry for parameter {name!r} (keys: {list(spec)})")


def pack_prior(spec: PriorSpec, shapes: Mapping[str, tuple]) -> dist.Distribution:
    """One prior over the flat parameter vector (event shape (P,)) from any prior spec.

    An i.i.d. univariate prior becomes ``prior.expand([P]).to_event(1)``, the fast path;
    anything else becomes a :class:`PackedPrior`.

    :param spec: a prior spec (see the module docstring).
    :param shapes: ordered {parameter name: shape}, e.g. :func:`~pyro_bnn.nets.param_shapes`.

    >>> prior = pack_prior({"layers.0.*": dist.Normal(0.0, 1.0), "*": ScaleMixtureNormal()},
    ...                    param_shapes((100, 10)))  # event shape (79510,)
    """
    total = sum(math.prod(s) for s in shapes.values())
    if isinstance(spec, dist.Distribution):
        if spec.batch_shape or spec.event_shape:
            raise ValueError(
                "prior must be univariate (it is used for every weight), got batch "
                f"{tuple(spec.batch_shape)} event {tuple(spec.event_shape)}; use a mapping "
                "or a callable for per-parameter priors"
            )
        _check_real(spec, "prior")
        return spec.expand([total]).to_event(1)
    if isinstance(spec, Mapping):
        unmatched = [
            key
            for key in spec
            if key not in shapes and not any(fnmatch.fnmatchcase(n, key) for n in shapes)
        ]
        if unmatched:
            raise ValueError(
                f"prior keys {unmatched} match no parameter; the parameters are {list(shapes)}"
            )
        chosen = {name: _lookup(spec, name) for name in shapes}
    elif callable(spec):
        chosen = {name: spec(name, tuple(shape)) for name, shape in shapes.items()}
    else:
        raise ValueError(f"prior must be a distribution, a mapping or a callable, got {spec!r}")
    first = next(iter(chosen.values()))
    if all(p is first for p in chosen.values()) and not first.batch_shape and not first.event_shape:
        return pack_prior(first, shapes)
    return PackedPrior(
        [
            (tuple(shape), _for_param(chosen[name], name, tuple(shape)))
            for name, shape in shapes.items()
        ]
    )
