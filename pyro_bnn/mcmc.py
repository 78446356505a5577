"""The exact posterior by Hamiltonian Monte Carlo: Pyro's NUTS (or HMC) over every latent
site of a BNN on the full data, chain by chain, and a guide made of the chains' draws.

Where the posterior is close to Gaussian (FC-10: logistic regression on 50,000 images, its
weights on neighbouring pixels strongly correlated), a diagonal mass matrix leaves NUTS at
its tree-depth cap. :func:`laplace` gives the mode and the inverse Hessian there, and
``fit_mcmc(..., laplace=...)`` uses them as a fixed dense inverse mass matrix and to start
each chain from an over-dispersed draw, so trajectories stay short.

Under the paper's scale mixture the posterior of a weight that the data barely pin is a
spike (sd e^-7) inside a slab (sd e^-1): no single step size crosses both, and chains in
the weights stay where they start. ``normal_scores=True`` (:class:`NormalScoreReparam`)
samples each weight's normal score eta = Phi^-1(F(w)) instead, whose prior is N(0, 1)
whatever F is; :func:`laplace` then works in those coordinates too.

:class:`PosteriorSamples` is a guide like any other, so every decision rule, evaluation
and attack of the library takes it in place of a fitted variational guide.

>>> guide, result = fit_mcmc(bnn, (x, y), num_samples=200, warmup=200, num_chains=4)
>>> result.summary()  # R-hat, effective sample size, divergences, wall time
>>> rule = ensemble_fn(bnn, guide, size=100)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import HMC, MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_sample, init_to_value
from pyro.infer.reparam.reparam import Reparam
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import nn

from .bnn import BNN
from .data import Split, training_data
from .fitting import check_device, check_positive
from .likelihoods import Categorical
from .priors import from_normal_scores, to_normal_scores

__all__ = [
    "FixedStepsHMC",
    "MCMCResult",
    "NormalScoreReparam",
    "PosteriorSamples",
    "chain_diagnostics",
    "configurational_temperature",
    "fit_mcmc",
    "in_memory",
    "laplace",
    "map_estimate",
]

KERNELS = ("nuts", "hmc")
OVERDISPERSION = 2.0  # a Laplace-started chain starts at mode + this * (a draw of N(0, cov))


class FixedStepsHMC(HMC):
    """Pyro's HMC with ``num_steps`` leapfrog steps per draw whatever the step size.

    Pyro's own HMC holds the trajectory length (its first step size times num_steps) and
    takes trajectory_length / step_size steps, so as warmup shrinks the step size from 1
    the steps per draw, and the cost, grow without bound.

    :param model: the Pyro model, e.g. a :class:`~pyro_bnn.bnn.BNN`.
    :param num_steps: leapfrog steps per draw, each one gradient.
    :param kwargs: the rest of Pyro's HMC options (step size, mass matrix, adaptation).

    >>> kernel = FixedStepsHMC(bnn, num_steps=20)  # 20 gradients a draw
    """

    def __init__(self, model, *, num_steps: int, **kwargs) -> None:
        super().__init__(model, num_steps=num_steps, **kwargs)
        self._fixed_steps = num_steps

    @property
    def num_steps(self) -> int:
        return self._fixed_steps


class _FixedMass:
    """A kernel whose mass matrix is the given dense inverse (P, P), not adapted: after
    Pyro sets up its adapter, the matrix is put in and the step size search rerun on it."""

    def __init__(self, *args, inverse_mass: torch.Tensor, **kwargs) -> None:
        super().__init__(*args, full_mass=True, adapt_mass_matrix=False, **kwargs)
        self._fixed_inverse_mass = inverse_mass

    def _initialize_adapter(self) -> None:
        super()._initialize_adapter()
        (sites,) = self.mass_matrix_adapter.inverse_mass_matrix  # one dense block, "weights"
        self.mass_matrix_adapter.inverse_mass_matrix = {sites: self._fixed_inverse_mass}
        if self._adapter.adapt_step_size:
            self._adapter.reset_step_size_adaptation(self._initial_params)


class _FixedMassNUTS(_FixedMass, NUTS):
    pass


class _FixedMassHMC(_FixedMass, FixedStepsHMC):
    pass


class NormalScoreReparam(Reparam):
    """Pyro reparameterizer: a latent site w ~ F (a Normal or the paper's scale mixture on
    every element) becomes eta ~ N(0, I) at site ``<name>_score``, and w =
    :func:`~pyro_bnn.priors.from_normal_scores` (F, eta) a deterministic site.

    :param device: where the scores live (the data's device).

    >>> model = poutine.reparam(bnn, config={"weights": NormalScoreReparam()})
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    def apply(self, msg: dict) -> dict:
        fn, event_dim = self._unwrap(msg["fn"])
        value = msg["value"]
        eta = None if value is None else to_normal_scores(fn, value).to(self.device)  # an init
        standard = dist.Normal(torch.zeros((), device=self.device), 1.0)
        eta = pyro.sample(f"{msg['name']}_score",
                          self._wrap(standard.expand(fn.batch_shape), event_dim), obs=eta,
                          infer={"is_observed": msg["is_observed"]})  # fmt: skip
        if value is None:
            value = from_normal_scores(fn, eta)
        return {"fn": dist.Delta(value, event_dim=event_dim).mask(False), "value": value,
                "is_observed": True}  # fmt: skip


class PosteriorSamples(nn.Module):
    """A guide that draws, on every call, one of the stored posterior samples uniformly.

    :param samples: ``{site: (S, *shape)}``, e.g. every chain's draws of :func:`fit_mcmc`.

    >>> guide = PosteriorSamples({"weights": draws})  # draws (S, P)
    >>> probs = ensemble_fn(bnn, guide, size=50)(x)
    """

    def __init__(self, samples: dict[str, torch.Tensor]) -> None:
        super().__init__()
        if not samples:
            raise ValueError("samples must name at least one site")
        sizes = {name: len(value) for name, value in samples.items()}
        if len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise ValueError(f"every site needs the same number (> 0) of samples, got {sizes}")
        self.site_names = list(samples)
        for i, value in enumerate(samples.values()):
            self.register_buffer(f"site{i}", value.detach())

    def _values(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"site{i}") for i, name in enumerate(self.site_names)}

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        values = self._values()
        first = next(iter(values.values()))
        index = pyro.sample(  # under Predictive's vectorised plate: one index per draw
            "_posterior_index",
            dist.Categorical(logits=first.new_zeros(len(first))),
            infer={"is_auxiliary": True},
        )
        return {
            name: pyro.sample(name, dist.Delta(value[index], event_dim=value.dim() - 1))
            for name, value in values.items()
        }

    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mean of every site (what :func:`~pyro_bnn.predict.mean_fn` uses)."""
        return {name: value.mean(0) for name, value in self._values().items()}


@dataclass
class MCMCResult:
    """What :func:`fit_mcmc` ran and found.

    :param samples: ``{site: (chains, draws, *shape)}``.
    :param r_hat: {site: the largest split R-hat over the site's elements}.
    :param ess: {site: the smallest effective sample size over its elements, all chains}.
    :param divergences: divergent transitions after warmup, per chain.
    :param wall_time_s: seconds, warmup included, all chains.
    :param settings: the kernel and its budget, and the number of training examples.

    >>> guide, result = fit_mcmc(bnn, (x, y))
    >>> result.r_hat["weights"], result.ess["weights"], result.summary()["divergences"]
    """

    samples: dict[str, torch.Tensor]
    r_hat: dict[str, float]
    ess: dict[str, float]
    divergences: list[int]
    wall_time_s: float
    settings: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Worst R-hat and ESS over every site, divergences, wall time and the settings."""
        return {
            "r_hat_max": max(self.r_hat.values()),
            "ess_min": min(self.ess.values()),
            "divergences": sum(self.divergences),
            "wall_time_s": self.wall_time_s,
            **self.settings,
        }


def chain_diagnostics(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split R-hat and the effective sample size of every element of a site.

    :param draws: ``(chains, draws, *shape)``, e.g. one site of :attr:`MCMCResult.samples`.
    :returns: (r_hat, ess), each (elements,): R-hat splits every chain in half, so that one
        chain still gives two; the ESS counts every chain.

    >>> r_hat, ess = chain_diagnostics(result.samples["weights"])  # (P,) each
    """
    if draws.dim() < 2 or draws.shape[1] < 4:
        raise ValueError(f"draws must be (chains, draws >= 4, ...), got {tuple(draws.shape)}")
    flat = draws.reshape(draws.shape[0], draws.shape[1], -1).double()  # (C, S, elements)
    return split_gelman_rubin(flat), effective_sample_size(flat)


def check_weights_only(model: BNN, caller: str) -> None:
    """Raise ValueError naming ``caller`` unless the model's only latent site is its weights."""
    with torch.no_grad():
        sites = set(pyro.poutine.trace(model).get_trace().stochastic_nodes)
    if sites != {"weights"}:
        raise ValueError(
            f"{caller} covers the weights alone; the model also samples "
            f"{sorted(sites - {'weights'})}"
        )


def configurational_temperature(
    model: BNN,
    data,
    draws: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    center: torch.Tensor | None = None,
    chunk_size: int = 10_000,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Per draw, (w - c) . grad U(w) / P over the coordinates in ``mask`` (P of them), with
    U(w) = -log p(w) - sum_n log p(y_n | x_n, w) on the full data and c a fixed ``center``.
    Under the exact posterior its mean is exactly 1, coordinate by coordinate
    (equipartition: E[(w_i - c_i) dU/dw_i] = 1, by parts), whatever the posterior's shape
    and c; draws of p^(1/T), too hot or too cold, read T (Wenzel et al. 2020 read SG-MCMC
    draws this way). A check of any sampler that needs no reference chain; a center near
    the posterior's (the MAP) makes each reading less noisy.

    :param model: a :class:`~pyro_bnn.bnn.BNN` whose only latent site is its weights.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param draws: (S, P) weight draws, e.g. ``result.samples["weights"]``, chains flattened.
    :param mask: (P,) bool, the coordinates to average over; None: all.
    :param center: (P,) c; None: 0.
    :param chunk_size: examples per forward pass.
    :param device: where it runs.
    :returns: (S,) float64, one reading per draw; their mean is the temperature.

    >>> t = configurational_temperature(bnn, load_mnist(), result.samples["weights"].flatten(0, 1))
    >>> float(t.mean())  # 1 at the exact posterior
    """
    check_positive("chunk_size", chunk_size, integer=True)
    check_weights_only(model, "configurational_temperature")
    if draws.dim() != 2 or draws.shape[1] != model.num_params:
        raise ValueError(f"draws must be (S, {model.num_params}), got {tuple(draws.shape)}")
    mask = torch.ones(model.num_params, dtype=torch.bool) if mask is None else mask
    if mask.shape != (model.num_params,) or mask.dtype != torch.bool or not mask.any():
        raise ValueError(f"mask must be a ({model.num_params},) bool tensor with a True in it")
    train = in_memory(model, data, device)
    mask = mask.to(train.x.device)
    center = torch.zeros(model.num_params) if center is None else center.detach()
    if center.shape != (model.num_params,):
        raise ValueError(f"center must be ({model.num_params},), got {tuple(center.shape)}")
    center = center.to(train.x.device, model.dtype)
    readings = []
    block = max(1, 200_000 // chunk_size)  # draws per pass: (block, chunk, K) outputs
    for w in draws.to(train.x.device, model.dtype).split(block):
        w = w.detach().requires_grad_(True)  # (block, P)
        (grad,) = torch.autograd.grad(-model.prior.log_prob(w).sum(), w)  # draws apart
        for start in range(0, len(train.x), chunk_size):
            xs, ys = train.x[start : start + chunk_size], train.y[start : start + chunk_size]
            out = model.apply(xs, w)  # (block, chunk, K)
            nll = -model.likelihood.distribution(out, {}).log_prob(ys).sum()
            grad += torch.autograd.grad(nll, w)[0]
        moved = ((w.detach() - center) * grad)[:, mask].double()  # (block, P in mask)
        readings.append(moved.sum(-1) / mask.sum())
    return torch.cat(readings)


def in_memory(model: BNN, data, device: str | torch.device) -> Split:
    """The training split of ``data`` as tensors on ``device``, with ``model`` moved there:
    a sampler's gradients need the data in memory, not a DataLoader.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param device: where the sampler runs.

    >>> train = in_memory(bnn, load_mnist(), "cpu")  # the train split, as a Split
    """
    if not isinstance(model, BNN):
        raise ValueError(f"model must be a pyro_bnn BNN, got {type(model).__name__}")
    device = check_device(device)
    train, _ = training_data(data, None)
    if not isinstance(train, Split):
        raise ValueError("data must be in memory (tensors or a Split), not a DataLoader")
    model.to(device)
    return train.to(device)


def map_estimate(
    model: BNN,
    data,
    *,
    max_iter: int = 500,
    device: str | torch.device = "cpu",
    normal_scores: bool = False,
) -> torch.Tensor:
    """The mode of a classifier's posterior p(w | D) on the full data, by L-BFGS from the
    prior's mean, with the prior taken as the Gaussian of its mean and variance (exact for
    a Gaussian prior): the MAP point estimate, (P,) on ``device``. With ``normal_scores``,
    the mode of p(eta | D) under the exact prior, eta the weights' normal scores, by
    L-BFGS from the normal scores of that Gaussian-prior mode.

    :param model: a :class:`~pyro_bnn.bnn.BNN` with the categorical likelihood.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param max_iter: L-BFGS iterations at most.
    :param device: where it runs.
    :param normal_scores: work in the coordinates of :class:`NormalScoreReparam`.

    >>> mode = map_estimate(BayesianMLP("FC-10", prior=make_prior("normal")), load_mnist())
    """
    if not isinstance(getattr(model, "likelihood", None), Categorical):
        raise ValueError("map_estimate and laplace need a BNN with the categorical likelihood")
    check_positive("max_iter", max_iter, integer=True)
    train = in_memory(model, data, device)
    x, y = train.x, train.y
    mean, variance = model.prior.mean.to(x.device), model.prior.variance.to(x.device)  # (P,)
    start = mean
    if normal_scores:  # eta ~ N(0, I): its prior mean 0 and variance 1
        gaussian = map_estimate(model, train, max_iter=max_iter, device=device)
        start = to_normal_scores(model.prior, gaussian.cpu()).to(x.device)
        mean, variance = torch.zeros_like(mean), torch.ones_like(variance)
    w = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        weights = from_normal_scores(model.prior, w) if normal_scores else w
        nll = F.cross_entropy(model.apply(x, weights), y, reduction="sum")
        loss = nll + ((w - mean).square() / variance).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def laplace(
    model: BNN,
    data,
    *,
    chunk_size: int = 500,
    max_iter: int = 500,
    device: str | torch.device = "cpu",
    normal_scores: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Laplace approximation of a classifier's posterior p(w | D) on the full data, with
    the prior taken as the Gaussian of its mean and variance (exact for a Gaussian prior;
    for a spike-and-slab one, whose curvature at 0 is the spike's, the moment-matched
    Gaussian gives each weight the spread of its prior, which is what a preconditioner
    needs): the mode, by L-BFGS, and the covariance there, the inverse Hessian (the data's
    part exact, by torch.func in chunks of examples).

    Costs P forward-mode passes over the data (FC-10: 7,850), and P x P memory: for small
    nets, such as the preconditioner of :func:`fit_mcmc`.

    :param model: a :class:`~pyro_bnn.bnn.BNN` with the categorical likelihood.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split).
    :param chunk_size: examples per Hessian chunk (memory: P x chunk_size x classes).
    :param max_iter: L-BFGS iterations at most.
    :param device: where it runs.
    :param normal_scores: the Laplace approximation of p(eta | D) under the exact prior,
        eta the weights' normal scores (:class:`NormalScoreReparam`). The chain rule's
        second-order term, (d nll / dw) (d2w / deta2), enters only where it is positive:
        where it is not, a weight sits between the spike and the slab, the mode may be a
        saddle there, and the term would cost the matrix its positive definiteness.
    :returns: the mode (P,) and the covariance (P, P), float64.

    >>> mode, cov = laplace(bnn, load_mnist())
    >>> guide, result = fit_mcmc(bnn, load_mnist(), laplace=(mode, cov))
    """
    check_positive("chunk_size", chunk_size, integer=True)
    mode = map_estimate(model, data, max_iter=max_iter, device=device, normal_scores=normal_scores)
    train = in_memory(model, data, device)
    x, y = train.x, train.y
    w = from_normal_scores(model.prior, mode) if normal_scores else mode

    def nll(w: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.apply(xs, w), ys, reduction="sum")

    hessian = torch.zeros(len(w), len(w), dtype=torch.float64, device=x.device)  # (P, P)
    grad = torch.zeros(len(w), dtype=torch.float64, device=x.device)  # (P,)
    for start in range(0, len(x), chunk_size):
        xs, ys = x[start : start + chunk_size], y[start : start + chunk_size]
        hessian += torch.func.hessian(nll)(w, xs, ys).double()  # the data's part
        if normal_scores:  # the chain rule's second-order term needs d nll / dw
            grad += torch.func.grad(nll)(w, xs, ys).double()
    if normal_scores:  # d2/deta2 of nll(w(eta)) + |eta|^2 / 2, by the chain rule
        slope, curvature = _normal_score_derivatives(model, mode)  # dw/deta, d2w/deta2
        hessian *= slope[:, None] * slope[None, :]
        hessian.diagonal().add_((grad * curvature).clamp_min(0) + 1)
    else:
        hessian.diagonal().add_(1 / model.prior.variance.to(x.device).double())  # the prior's
    covariance = torch.cholesky_inverse(torch.linalg.cholesky(hessian))
    return mode.double(), (covariance + covariance.T) / 2


def _normal_score_derivatives(model: BNN, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dw/deta and d2w/deta2 (P,) each, float64, of w = from_normal_scores(prior, eta):
    w' = phi(eta) / p(w), so w'' = -eta w' - (d log p / dw) w'^2."""
    device = eta.device
    eta = eta.double().detach().cpu().requires_grad_(True)  # the prior's tensors are on the CPU
    w = from_normal_scores(model.prior, eta)
    (slope,) = torch.autograd.grad(w.sum(), eta)
    at = w.detach().requires_grad_(True)
    (score,) = torch.autograd.grad(model.prior.log_prob(at).sum(), at)  # elementwise
    curvature = -eta.detach() * slope - score * slope.square()
    return slope.to(device), curvature.to(device)


def fit_mcmc(
    model: BNN,
    data,
    *,
    num_samples: int = 200,
    warmup: int = 200,
    num_chains: int = 4,
    kernel: str = "nuts",
    max_tree_depth: int = 10,
    num_steps: int = 10,
    target_accept: float = 0.8,
    laplace: tuple[torch.Tensor, torch.Tensor] | None = None,
    normal_scores: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[PosteriorSamples, MCMCResult]:
    """Sample the posterior p(w | D) of every latent site with Pyro's MCMC on the full data
    (no minibatches: the likelihood of every example in every step).

    The chains run one after another, chain c from Pyro's RNG seeded ``seed + c`` and from
    its own draw of the prior (Pyro's ``init_to_sample``), so that R-hat compares chains
    that started apart. With ``laplace`` = (mode, cov) of :func:`laplace`, the mass matrix
    is cov, fixed (only the step size adapts), and chain c starts at an over-dispersed
    draw, mode + 2 L z with L L^T = cov and z ~ N(0, I). With ``normal_scores`` the chains
    move the weights' normal scores (:class:`NormalScoreReparam`; ``laplace`` then comes
    from ``laplace(..., normal_scores=True)``), and the draws kept are the weights.

    :param model: the :class:`~pyro_bnn.bnn.BNN`.
    :param data: (x, y) tensors, a Split, or the MNIST splits (their train split); held in
        memory.
    :param num_samples: draws kept per chain, >= 4.
    :param warmup: adaptation steps per chain (step size and a diagonal mass matrix).
    :param num_chains: chains, >= 1 (R-hat compares them; with one, the halves of it).
    :param kernel: 'nuts' (the No-U-Turn sampler) or 'hmc' (``num_steps`` leapfrog steps).
    :param max_tree_depth: NUTS's cap: at most 2**depth - 1 leapfrog steps per draw.
    :param num_steps: HMC's leapfrog steps per draw.
    :param target_accept: the acceptance rate the step size adapts to.
    :param laplace: (mode (P,), covariance (P, P)) of the weights, the site of a
        :class:`~pyro_bnn.bnn.BNN` with no other latent: precondition by them.
    :param normal_scores: sample the normal scores of the weights, not the weights.
    :param seed: seeds chain 0; chain c uses seed + c.
    :param device: where the chains run.
    :param progress: show Pyro's progress bar.
    :returns: (guide of every kept draw, :class:`MCMCResult`).

    >>> guide, result = fit_mcmc(BNN(nn.Linear(784, 10)), load_mnist(), num_chains=2)
    """
    for name, value in (("num_samples", num_samples), ("warmup", warmup),
                        ("num_chains", num_chains), ("max_tree_depth", max_tree_depth),
                        ("num_steps", num_steps)):  # fmt: skip
        check_positive(name, value, integer=True)
    if num_samples < 4:  # split R-hat halves each chain, and ESS needs a few draws
        raise ValueError(f"num_samples must be at least 4, got {num_samples!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    train = in_memory(model, data, device)
    x, y = train.x, train.y
    common = {"target_accept_prob": target_accept, "max_plate_nesting": 1}
    nuts, hmc = (NUTS, FixedStepsHMC) if laplace is None else (_FixedMassNUTS, _FixedMassHMC)
    if laplace is not None:
        mode, cov = (t.to(device=x.device, dtype=torch.float64) for t in laplace)
        if mode.shape != (model.num_params,) or cov.shape != (len(mode), len(mode)):
            raise ValueError(f"laplace must be (mode ({model.num_params},), cov (P, P)), got "
                             f"{tuple(mode.shape)} and {tuple(cov.shape)}")  # fmt: skip
        root = torch.linalg.cholesky(cov)  # (P, P)
        common["inverse_mass"] = cov.to(x.dtype)
    sampled = (pyro.poutine.reparam(model, config={"weights": NormalScoreReparam(x.device)})
               if normal_scores else model)  # fmt: skip
    draws, divergences = [], []
    start = time.perf_counter()
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        if laplace is None:
            common["init_strategy"] = init_to_sample
        else:
            z = torch.randn(len(mode), dtype=torch.float64, device=x.device)
            start_at = mode + OVERDISPERSION * root @ z  # (P,)
            if normal_scores:  # the initial value is the weights'; the reparam inverts it
                start_at = from_normal_scores(model.prior, start_at.cpu()).to(start_at)
            common["init_strategy"] = init_to_value(values={"weights": start_at.to(x.dtype)})
        if kernel == "nuts":
            step = nuts(sampled, max_tree_depth=max_tree_depth, **common)
        else:
            step = hmc(sampled, num_steps=num_steps, **common)
        mcmc = MCMC(step, num_samples=num_samples, warmup_steps=warmup,
                    disable_progbar=not progress)  # fmt: skip
        mcmc.run(x, y)
        kept = mcmc.get_samples()
        if normal_scores:  # (S, P) scores to weights
            kept["weights"] = from_normal_scores(model.prior, kept.pop("weights_score").cpu())
        draws.append({k: v.detach().to(x.device) for k, v in kept.items()})
        divergences.append(len(mcmc.diagnostics()["divergences"]["chain 0"]))
    wall = time.perf_counter() - start
    samples = {name: torch.stack([d[name] for d in draws]) for name in draws[0]}  # (C, S, ...)
    r_hat, ess = {}, {}
    for name, value in samples.items():
        site_r_hat, site_ess = chain_diagnostics(value)
        r_hat[name], ess[name] = float(site_r_hat.max()), float(site_ess.min())
    settings = {"kernel": kernel, "num_chains": num_chains, "num_samples": num_samples,
                "warmup": warmup, "n_data": len(x), "mass": "diag" if laplace is None
                else "laplace", "normal_scores": normal_scores}  # fmt: skip
    settings |= {"max_tree_depth": max_tree_depth} if kernel == "nuts" else {"num_steps": num_steps}
    guide = PosteriorSamples({name: v.reshape(-1, *v.shape[2:]) for name, v in samples.items()})
    return guide, MCMCResult(samples, r_hat, ess, divergences, round(wall, 2), settings)
