"""Bayesian versions of torch nets: :class:`BNN` for any ``nn.Module``, :class:`BayesianMLP`
as its fast path, and the per-datapoint ELBO.

All parameters of the net form one latent site, ``"weights"`` of shape (P,), in the order of
``net.named_parameters()``; :meth:`BNN.unflatten` turns it back into named tensors. One site
instead of one per tensor keeps Pyro's per-site overhead out of the SVI step; per-parameter
priors still work by name through :func:`pyro_bnn.priors.pack_prior`. This is Section 2.1 of
the paper: a prior p(w) on every weight and bias (eq. 2), a likelihood p(D | w), and a
variational posterior q(w) (eq. 1, :mod:`pyro_bnn.guides`) fit by minimising
log q(w) - log p(w) p(D | w), a one-sample negative ELBO (steps 1-4, eqs. 3-4).

The forward pass takes leading sample dims: weights ``(*S, P)`` give outputs ``(*S, N, K)``, which
is what ``Predictive(parallel=True)`` and vectorised ELBO particles need. A general net
runs its S samples through ``torch.func.vmap`` over ``functional_call``; the MLP runs them
as batched matrix products.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from torch import nn
from torch.func import functional_call

from .likelihoods import Likelihood, make_likelihood
from .nets import IN_FEATURES, MLP, arch_name, mlp_forward
from .priors import PriorSpec, ScaleMixtureNormal, pack_prior

__all__ = ["BNN", "BayesianMLP", "DatapointELBO", "init_guide", "local_params"]


@contextmanager
def local_params(*modules: nn.Module) -> Iterator[None]:
    """Pyro's ``module_local_params`` for the duration of the block: every PyroModule in
    ``modules`` uses the parameters it holds, whatever is in the global param store, so
    two guides of the same class never share parameters by name.

    Pyro gives a PyroModule its local param state only when it is built under that
    setting; modules built without it get an empty one here.

    :param modules: the modules (e.g. a BNN and its guide) whose PyroModules keep their
        parameters locally inside the block.

    >>> with local_params(bnn, guide):
    ...     guide()
    """
    with pyro.settings.context(module_local_params=True):
        for module in modules:
            for m in module.modules():
                if isinstance(m, PyroModule) and not hasattr(m._pyro_context, "param_state"):
                    m._pyro_context.param_state = {"params": {}, "constraints": {}}
        yield


class BNN(PyroModule):
    """Pyro model of any torch net with a prior on every parameter (Section 2.1, eq. 2).

    :param net: the torch net; its forward maps x ``(N, *input_shape)`` to outputs (N, K). Its
        own parameter values are not used (weights come from the prior or the guide); its
        buffers are.
    :param prior: a prior spec (see :mod:`pyro_bnn.priors`): one distribution for every
        parameter, a mapping from parameter names or glob patterns, or a callable
        ``(name, shape) -> distribution``; default the paper's ScaleMixtureNormal.
    :param likelihood: a :class:`~pyro_bnn.likelihoods.Likelihood` or a name
        ('categorical', 'bernoulli', 'gaussian').
    :param input_shape: the shape of one input; recorded from the first batch if None.

    Call signature ``model(x=None, y=None, num_data=None)``. The likelihood plate has size
    ``num_data`` (the training-set size) and subsamples the given batch, so the
    log-likelihood is scaled by num_data / N. With no x the model samples only its latent
    sites, which is how guides are set up without data.

    >>> cnn = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3456, 10))
    >>> bnn = BNN(cnn, prior={"0.*": dist.Normal(0.0, 0.1), "*": ScaleMixtureNormal()})
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        prior: PriorSpec | None = None,
        likelihood: str | Likelihood = "categorical",
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be a torch nn.Module, got {type(net).__name__}")
        params = dict(net.named_parameters())
        if not params:
            raise ValueError("net has no parameters to put a prior on")
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in params.values()):
            raise ValueError(
                "net has uninitialised (lazy) parameters; run it once on an example input "
                "before making it Bayesian"
            )
        self.net = net
        self.shapes = {name: tuple(p.shape) for name, p in params.items()}
        self.sizes = [math.prod(s) for s in self.shapes.values()]
        self.num_params = sum(self.sizes)
        self.prior = pack_prior(ScaleMixtureNormal() if prior is None else prior, self.shapes)
        self.likelihood = make_likelihood(likelihood)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.out_features: int | None = None
        self.dtype = next(iter(params.values())).dtype  # the inputs' dtype: the weights'

    def unflatten(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(*S, P)`` flat weights -> ``{name: (*S, *shape)}`` views."""
        if weights.shape[-1] != self.num_params:
            raise ValueError(
                f"weights must end in {self.num_params} (the net's parameter count), "
                f"got shape {tuple(weights.shape)}"
            )
        chunks = weights.split(self.sizes, dim=-1)
        return {
            name: chunk.unflatten(-1, shape)
            for (name, shape), chunk in zip(self.shapes.items(), chunks)
        }

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: (*shape)}`` for every parameter of the net -> (P,) flat weights, the inverse
        of :meth:`unflatten`; e.g. ``dict(net.named_parameters())`` of a trained twin net.

        >>> bnn.flatten(dict(net.named_parameters()))  # (P,)
        """
        names = set(params)
        if names != set(self.shapes):
            raise ValueError(
                f"params must name exactly the net's parameters; missing "
                f"{sorted(set(self.shapes) - names)}, unexpected {sorted(names - set(self.shapes))}"
            )
        for name, shape in self.shapes.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(
                    f"params[{name!r}] must have shape {shape}, got {tuple(params[name].shape)}"
                )
        return torch.cat([params[name].detach().reshape(-1) for name in self.shapes])

    def apply(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The net's output with the given weights: x (N, ...) and weights ``(*S, P)`` ->
        ``(*S, N, K)``."""
        if weights.dim() == 1:
            return functional_call(self.net, self.unflatten(weights), (x,))
        lead = weights.shape[:-1]
        flat = weights.reshape(-1, self.num_params)  # (S, P)
        out = torch.vmap(
            lambda w: functional_call(self.net, self.unflatten(w), (x,)), randomness="different"
        )(flat)  # (S, N, K)
        return out.reshape(*lead, *out.shape[1:])

    def check_x(self, x: torch.Tensor, *, finite: bool = True) -> None:
        """Raise ValueError naming ``x`` unless it is a batch of inputs this net takes."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(
                f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x))}"
            )
        shape = self.input_shape
        if x.dim() < 1 or (shape is not None and tuple(x.shape[1:]) != shape):
            want = "(N, ...)" if shape is None else str((-1, *shape)).replace("-1", "N")
            raise ValueError(f"x must have shape {want}, got {tuple(x.shape)}")
        if x.dtype != self.dtype:
            name = str(self.dtype).removeprefix("torch.")
            raise ValueError(
                f"x must be {name} like the weights, got {x.dtype}; use x.to(torch.{name})"
            )
        if finite and not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")

    def check_y(self, y: torch.Tensor, n: int) -> None:
        """Raise ValueError naming ``y`` unless it holds n valid targets."""
        self.likelihood.check_targets(y, n, self.out_features or 0)

    def example_input(self, n: int = 1, device=None) -> torch.Tensor:
        """Zeros of shape ``(n, *input_shape)``, for shape-only calls."""
        if self.input_shape is None:
            raise ValueError("input_shape is unknown until the model has seen a batch")
        return torch.zeros(n, *self.input_shape, device=device)

    def _record_shapes(self, x: torch.Tensor, out: torch.Tensor) -> None:
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        if self.out_features is None:
            if out.shape[-2] != x.shape[0]:
                raise ValueError(f"the net must map x (N, ...) to (N, K), got {tuple(out.shape)}")
            self.likelihood.check_out_features(out.shape[-1])
            self.out_features = out.shape[-1]

    def forward(
        self,
        x: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        num_data: int | None = None,
    ) -> torch.Tensor:
        weights = pyro.sample("weights", self.prior)  # (P,), or (*S, 1, P) under plates
        latents = self.likelihood.latents()
        if x is not None and weights.device != x.device:
            # a draw from the prior itself (float parameters, so made on the CPU), as in
            # Predictive's first, unguided trace; a guide's draw is on its device already
            weights = weights.to(x.device)
        if x is not None:  # the likelihood's latents (a learned noise scale) likewise
            latents = {k: v.to(x.device) for k, v in latents.items()}
        if x is None:
            if y is not None:
                raise ValueError("y was given without x")
            return weights
        self.check_x(x, finite=False)
        n = x.shape[0]
        if num_data is not None and num_data < n:
            raise ValueError(f"num_data must be >= the batch size {n}, got {num_data}")
        if weights.dim() > 1:  # drop the singleton of the data plate: (*S, P)
            weights = weights.squeeze(-2)
        out = self.apply(x, weights)  # (*S, N, K)
        self._record_shapes(x, out)
        with pyro.plate("data", num_data or n, subsample=torch.arange(n, device=x.device)):
            self.likelihood.observe(out, y, latents)
        return out


class BayesianMLP(BNN):
    """The fast path of :class:`BNN` for a ReLU MLP (:class:`pyro_bnn.nets.MLP`): S weight
    samples run as batched matrix products instead of vmap.

    :param widths: layer widths or an arch name, e.g. ``(100, 100, 10)`` or 'FC-100-100-10'.
    :param prior: a prior spec; default the paper's ScaleMixtureNormal(0.5, e^-1, e^-7).
    :param in_features: input dimension (784 for MNIST).
    :param likelihood: as in :class:`BNN`.

    >>> bnn = BayesianMLP("FC-100-100-10")
    >>> bnn = BayesianMLP((100, 10), prior=pyro.distributions.Normal(0.0, 1.0))
    """

    def __init__(
        self,
        widths: Sequence[int] | str = (100, 100, 10),
        *,
        prior: PriorSpec | None = None,
        in_features: int = IN_FEATURES,
        likelihood: str | Likelihood = "categorical",
    ) -> None:
        with torch.random.fork_rng(devices=[]):  # its init is unused: leave the RNG stream
            net = MLP(widths, in_features)
        super().__init__(net, prior=prior, likelihood=likelihood, input_shape=(in_features,))
        self.widths = net.widths
        self.in_features = in_features

    @property
    def arch(self) -> str:
        return arch_name(self.widths)

    def apply(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        named = list(self.unflatten(weights).values())
        return mlp_forward(x, list(zip(named[::2], named[1::2])))


def init_guide(model: BNN, guide) -> None:
    """Create an autoguide's parameters, if it has none yet, from the model's latent sites
    alone (no data: nothing of a dataset is kept in the guide), on the model's device.

    :param model: the :class:`BNN`.
    :param guide: its autoguide, e.g. from :func:`~pyro_bnn.guides.make_guide`.

    >>> init_guide(bnn, guide)  # guide.parameters() now holds every parameter
    """
    if getattr(guide, "prototype_trace", True) is None:
        with torch.no_grad(), local_params(model, guide):
            guide()
        # the prior's float parameters draw on the CPU: put the guide beside the model
        template = next(model.parameters(), None)
        if template is not None:
            guide.to(template.device)


class DatapointELBO(Trace_ELBO):
    """Trace_ELBO divided by the training-set size ``num_data``: the loss per datapoint.

    With the plate scaling of :class:`BNN` this is mean minibatch NLL + KL(q || p) /
    num_data (a Monte Carlo KL): the paper's objective f = log q(w) - log p(w) p(D | w)
    (Section 2.1, step 3; minimised by eqs. 3-4) divided by N, the scale on which the
    paper's SGD learning rate of 1e-3 is stable. After each ``differentiable_loss`` call,
    :attr:`parts` holds the detached per-datapoint {'elbo', 'nll', 'kl'} of that estimate.

    :param num_data: the training-set size N.

    >>> loss = DatapointELBO(50_000).differentiable_loss(bnn, guide, x, y, num_data=50_000)
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
