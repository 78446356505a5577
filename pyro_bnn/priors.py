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
import functools
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
    "from_normal_scores",
    "to_normal_scores",
    "make_prior",
    "pack_prior",
]

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
BISECTIONS = 80  # halvings of the bracket of a quantile: below float64's resolution
QUANTILE_GRID_MIN = 1e-6  # normal scores below it map linearly to weights
# log normal scores at which the scale mixture's quantiles are tabulated, and the Newton
# steps from there: the normal score of every weight back within 1e-8 for pi in [0.25,
# 0.9] and sigmas from 1e-6 to 2 (tests/test_priors.py)
QUANTILE_GRID = torch.linspace(
    math.log(QUANTILE_GRID_MIN), math.log(40.0), 4001, dtype=torch.float64
)
NEWTON_STEPS = 6
FAR_TAIL = -700.0  # log tail probabilities below it underflow exp in float64


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


def _log_density(prior: ScaleMixtureNormal, w: torch.Tensor) -> torch.Tensor:
    """log p(w), elementwise, without validating w (a diverging step may bring NaN)."""
    return _MixtureLogProb.apply(w, prior._c1, prior._h1, prior._c2, prior._h2)


def _log_survival(prior: ScaleMixtureNormal, a: torch.Tensor) -> torch.Tensor:
    """log P(w > a) under the mixture, exact in the far tail."""
    return torch.logaddexp(
        math.log(prior.pi) + torch.special.log_ndtr(-a / prior.sigma1),
        math.log1p(-prior.pi) + torch.special.log_ndtr(-a / prior.sigma2),
    )


def _bisect_quantile(prior: ScaleMixtureNormal, a: torch.Tensor) -> torch.Tensor:
    """The mixture's quantile at Phi(a), a >= 0 (float64), by bisection on the log survival
    function between the two components' quantiles: exact, slow."""
    target = torch.special.log_ndtr(-a)  # log P(w > quantile) = log (1 - Phi(a))
    small, large = sorted((prior.sigma1, prior.sigma2))
    lo, hi = small * a, large * a  # each component's quantile brackets the mixture's
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        short = _log_survival(prior, mid) > target  # mid lies below the quantile
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    return (lo + hi) / 2


@functools.lru_cache(maxsize=16)
def _quantile_table(pi: float, sigma1: float, sigma2: float) -> torch.Tensor:
    """log w at the normal scores exp(QUANTILE_GRID), by bisection, once per prior."""
    return _bisect_quantile(ScaleMixtureNormal(pi, sigma1, sigma2), QUANTILE_GRID.exp()).log()


def _mixture_quantile(prior: ScaleMixtureNormal, eta: torch.Tensor) -> torch.Tensor:
    """The weight w whose prior CDF is Phi(eta), float64: bracketed by a table of the
    quantiles, then safeguarded Newton steps on log w (a bisection where a step leaves
    the bracket). Symmetric, so the upper tail keeps its precision."""
    a = eta.double().abs().nan_to_num(0.0, posinf=0.0)  # non-finite scores pass through below
    log_a = a.clamp_min(QUANTILE_GRID_MIN).log()
    target = torch.special.log_ndtr(-a)
    table = _quantile_table(prior.pi, prior.sigma1, prior.sigma2).to(a.device)  # (G,)
    grid = QUANTILE_GRID.to(a.device)
    spacing = (grid[-1] - grid[0]) / (len(grid) - 1)
    at = ((log_a - grid[0]) / spacing).clamp(0, len(grid) - 1 - 1e-9)  # fractional index
    i = at.floor().long()
    lo, hi = table[i], table[i + 1]  # log w brackets: the quantile is monotone
    small, large = sorted((prior.sigma1, prior.sigma2))
    beyond = log_a > grid[-1]  # past the table: the components' quantiles bracket it, and
    lo = torch.where(beyond, log_a + math.log(small), lo)  # Newton from the wide one's stays
    hi = torch.where(beyond, log_a + math.log(large), hi)  # inside (log S concave there)
    u = torch.where(beyond, hi, torch.lerp(lo, hi, at - i))
    for _ in range(NEWTON_STEPS):
        w = u.exp()
        log_s = _log_survival(prior, w)
        gap = log_s - target  # > 0: u below the quantile
        lo, hi = torch.where(gap > 0, u, lo), torch.where(gap > 0, hi, u)
        step = u + gap * (log_s - _log_density(prior, w) - u).exp()  # dlogS/du = -w p(w) / S
        u = torch.where((step >= lo) & (step <= hi), step, (lo + hi) / 2)
    # below the table the quantile is linear: w = eta phi(0) / p(0), to O(eta^3)
    at_zero = float(_log_density(prior, torch.zeros((), dtype=a.dtype)))
    linear = a * math.exp(-LOG_SQRT_2PI - at_zero)
    w = torch.where(a < QUANTILE_GRID_MIN, linear, u.exp())
    return torch.copysign(w, eta.double()).where(eta.isfinite(), eta.double())


def _univariate(prior: dist.Distribution) -> dist.Distribution:
    """The elementwise prior under Independent wrappers, if normal scores support it."""
    base = prior
    while isinstance(base, dist.Independent):
        base = base.base_dist
    if not isinstance(base, (ScaleMixtureNormal, dist.Normal)):
        raise ValueError(
            "normal scores need a Normal or ScaleMixtureNormal prior on every weight, got "
            f"{type(base).__name__}"
        )
    return base


class _FromNormalScores(torch.autograd.Function):
    """w = F^-1(Phi(eta)) elementwise, with dw/deta = phi(eta) / p(w)."""

    @staticmethod
    def forward(ctx, eta, prior):
        if isinstance(prior, dist.Normal):
            scale = prior.scale.to(eta)
            ctx.save_for_backward(scale)
            return prior.loc.to(eta) + scale * eta
        w = _mixture_quantile(prior, eta)
        log_phi = -eta.double().square() / 2 - LOG_SQRT_2PI
        ctx.save_for_backward((log_phi - _log_density(prior, w)).exp().to(eta.dtype))
        return w.to(eta.dtype)

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None


def from_normal_scores(prior: dist.Distribution, eta: torch.Tensor) -> torch.Tensor:
    """The weights whose normal scores are ``eta``: w = F^-1(Phi(eta)) elementwise, F the
    prior's CDF. If eta ~ N(0, I), then w ~ prior. A sampler that moves eta instead of w
    sees the spike and the slab of the paper's prior as one standard normal.

    :param prior: a univariate Normal or :class:`ScaleMixtureNormal`, possibly expanded
        and made independent (as :func:`pack_prior` makes it): F.
    :param eta: the normal scores, shaped like the prior's samples.
    :returns: w, shaped as eta, differentiable in eta: dw/deta = phi(eta) / p(w).

    >>> w = from_normal_scores(ScaleMixtureNormal(), torch.randn(1000))  # ~ the prior
    """
    return _FromNormalScores.apply(eta, _univariate(prior))


def to_normal_scores(prior: dist.Distribution, w: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`from_normal_scores`: eta = Phi^-1(F(w)), not differentiable.

    :param prior: as for :func:`from_normal_scores`: F.
    :param w: the weights.
    :returns: their normal scores, shaped as w.

    >>> eta = to_normal_scores(ScaleMixtureNormal(), w)
    """
    base = _univariate(prior)
    if isinstance(base, dist.Normal):
        return (w - base.loc.to(w)) / base.scale.to(w)
    log_tail = _log_survival(base, w.double().abs())  # log P(W > |w|), in (-inf, log 1/2]
    a = -torch.special.ndtri(log_tail.exp())
    # where exp underflows (|eta| > 38), Newton on log Phi(-a) = log_tail from the
    # asymptote a^2 / 2 + log a ~ -log_tail - log sqrt(2 pi)
    far = log_tail < FAR_TAIL
    guess = (-2 * log_tail.clamp(max=FAR_TAIL)).sqrt()
    for _ in range(NEWTON_STEPS):
        log_phi = torch.special.log_ndtr(-guess)
        slope = (-guess.square() / 2 - LOG_SQRT_2PI - log_phi).exp()  # -d log Phi(-a) / da
        guess = guess + (log_phi - log_tail) / slope
    eta = torch.copysign(torch.where(far, guess, a), w.double()).to(w.dtype)
    return eta.where(w.isfinite(), w)


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
