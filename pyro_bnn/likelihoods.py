"""Likelihoods: what a net's output means, as the ``"obs"`` site of a BNN and as predictions.

A likelihood turns the net's raw output ``out`` ``(*S, N, K)`` into a distribution over the
targets. It owns three things (TyXe's design): the observation site (the BNN's data plate
scales it by num_data / N), the check of the targets, and the predictive aggregation.

- :class:`Categorical`: K = C logits, integer labels in [0, C); predicts (S, N, C) probs.
- :class:`Bernoulli`: K = 1 logit, labels in {0, 1}; predicts (S, N, 2) probs, so the
  classification harness scores it like any other classifier.
- :class:`Gaussian`: K = 1 mean with ``scale`` a fixed float, or ``scale="learned"`` (one
  latent homoskedastic log-scale, learned by the guide), or ``scale="heteroskedastic"``
  (K = 2: mean and softplus(raw) + min_scale per input); predicts (loc, scale), each (S, N).

>>> bnn = BNN(net, likelihood=Gaussian(scale="learned"))
>>> bnn = BNN(net, likelihood="bernoulli")
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

__all__ = ["LIKELIHOODS", "Bernoulli", "Categorical", "Gaussian", "Likelihood", "make_likelihood"]


class Likelihood:
    """Base class. Subclasses set :attr:`out_features` checks and implement
    :meth:`distribution`, :meth:`check_targets` and :meth:`predict`.

    >>> isinstance(make_likelihood("categorical"), Likelihood)  # True
    """

    #: torch dtype of the targets
    target_dtype: torch.dtype = torch.float32

    def latents(self) -> dict[str, torch.Tensor]:
        """Sample this likelihood's own latent sites (none by default); called by the model."""
        return {}

    def check_out_features(self, k: int) -> None:
        """Raise ValueError if a net with ``k`` outputs cannot feed this likelihood."""

    def distribution(self, out: torch.Tensor, latents: dict) -> dist.Distribution:
        """The observation distribution of out ``(*S, N, K)``; batch shape ``(*S, N)``."""
        raise NotImplementedError

    def check_targets(self, y: torch.Tensor, n: int, k: int) -> None:
        """Raise ValueError naming ``y`` unless it is n valid targets."""
        raise NotImplementedError

    def dummy_targets(self, n: int) -> torch.Tensor:
        """n valid targets, for shape-only calls."""
        return torch.zeros(n, dtype=self.target_dtype)

    def predict(self, out: torch.Tensor, latents: dict):
        """Per-sample predictions from out ``(*S, N, K)``."""
        raise NotImplementedError

    def observe(self, out: torch.Tensor, y: torch.Tensor | None, latents: dict) -> None:
        """The ``"obs"`` sample site; call inside the data plate."""
        pyro.sample("obs", self.distribution(out, latents), obs=y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_long_labels(y: torch.Tensor, n: int, classes: int) -> None:
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long:
        raise ValueError(
            f"y must be an int64 tensor of class labels, got {getattr(y, 'dtype', type(y))}"
        )
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match x, got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(
            f"y must hold labels in [0, {classes}) for a net with {classes} outputs, "
            f"got labels in [{int(y.min())}, {int(y.max())}]"
        )


class Categorical(Likelihood):
    """Softmax classification over the net's K = C outputs (the paper's likelihood).

    >>> bnn = BNN(net, likelihood=Categorical())  # the same as likelihood="categorical"
    """

    target_dtype = torch.long

    def check_out_features(self, k: int) -> None:
        if k < 2:
            raise ValueError(f"a categorical likelihood needs >= 2 net outputs, got {k}")

    def distribution(self, out, latents):
        return dist.Categorical(logits=out)

    def check_targets(self, y, n, k):
        _check_long_labels(y, n, k)

    def predict(self, out, latents):
        return out.softmax(-1)  # (*S, N, C)


class Bernoulli(Likelihood):
    """Binary classification from one logit; labels are 0/1 (int64 or float).

    >>> bnn = BNN(nn.Linear(5, 1), likelihood=Bernoulli())
    """

    def check_out_features(self, k: int) -> None:
        if k != 1:
            raise ValueError(f"a Bernoulli likelihood needs 1 net output, got {k}")

    def distribution(self, out, latents):
        return dist.Bernoulli(logits=out.squeeze(-1))

    def check_targets(self, y, n, k):
        if not isinstance(y, torch.Tensor) or y.shape != (n,):
            raise ValueError(f"y must be a tensor of shape ({n},), got {getattr(y, 'shape', y)}")
        if n and not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("y must hold binary labels 0 or 1 for a Bernoulli likelihood")

    def observe(self, out, y, latents):
        super().observe(out, None if y is None else y.to(out.dtype), latents)

    def predict(self, out, latents):
        p = torch.sigmoid(out)  # (*S, N, 1)
        return torch.cat([1 - p, p], dim=-1)  # (*S, N, 2)


class Gaussian(Likelihood):
    """Regression: y ~ N(out[..., 0], scale^2).

    :param scale: a fixed noise sd (float > 0); ``"learned"``: one homoskedastic sd,
        ``exp(log_scale)`` with ``log_scale ~ N(log_scale_loc, log_scale_scale^2)`` a latent
        site the guide learns; ``"heteroskedastic"``: the net's second output gives the sd
        per input, softplus(out[..., 1]) + ``min_scale``.
    :param log_scale_loc: mean of the ``"learned"`` scale's Normal prior on log sd.
    :param log_scale_scale: sd of that prior, > 0.
    :param min_scale: floor added to the ``"heteroskedastic"`` sd, > 0.

    >>> Gaussian(0.1), Gaussian("learned"), Gaussian("heteroskedastic")
    """

    SCALES = ("learned", "heteroskedastic")

    def __init__(
        self,
        scale: float | str = 1.0,
        *,
        log_scale_loc: float = 0.0,
        log_scale_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        if isinstance(scale, str):
            if scale not in self.SCALES:
                raise ValueError(
                    f"scale must be a float > 0 or one of {', '.join(self.SCALES)}, got {scale!r}"
                )
        elif not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite float > 0 or a name, got {scale!r}")
        for name, value in (("log_scale_scale", log_scale_scale), ("min_scale", min_scale)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.scale = scale
        self.log_scale_loc, self.log_scale_scale = float(log_scale_loc), float(log_scale_scale)
        self.min_scale = float(min_scale)

    @property
    def out_features(self) -> int:
        return 2 if self.scale == "heteroskedastic" else 1

    def latents(self):
        if self.scale != "learned":
            return {}
        prior = dist.Normal(self.log_scale_loc, self.log_scale_scale)
        return {"log_scale": pyro.sample("log_scale", prior)}  # () or (*S, 1) under plates

    def check_out_features(self, k: int) -> None:
        if k != self.out_features:
            raise ValueError(
                f"a Gaussian likelihood with scale={self.scale!r} needs {self.out_features} "
                f"net output(s), got {k}"
            )

    def _loc_scale(self, out, latents):
        loc = out[..., 0]  # (*S, N)
        if self.scale == "heteroskedastic":
            scale = F.softplus(out[..., 1]) + self.min_scale
        elif self.scale == "learned":
            scale = latents["log_scale"].exp()  # (), (*S, 1) under plates, or (S,) drawn
            if 0 < scale.dim() < loc.dim():
                scale = scale.unsqueeze(-1)
            scale = scale.expand(loc.shape)  # (*S, N)
        else:
            scale = torch.full_like(loc, self.scale)
        return loc, scale

    def distribution(self, out, latents):
        return dist.Normal(*self._loc_scale(out, latents))

    def check_targets(self, y, n, k):
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise ValueError(
                f"y must be a float tensor of regression targets, got "
                f"{getattr(y, 'dtype', type(y))}"
            )
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match x, got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("y contains NaN or infinite values")

    def predict(self, out, latents):
        return self._loc_scale(out, latents)  # loc, scale: (*S, N) each

    def __repr__(self) -> str:
        return f"Gaussian(scale={self.scale!r})"


# likelihood name -> class, the names make_likelihood and BNN(likelihood=...) accept
LIKELIHOODS = {"categorical": Categorical, "bernoulli": Bernoulli, "gaussian": Gaussian}


def make_likelihood(spec: str | Likelihood) -> Likelihood:
    """A likelihood from a name in :data:`LIKELIHOODS` or an instance (passed through).

    :param spec: 'categorical', 'bernoulli', 'gaussian' (sd 1), or a :class:`Likelihood`.

    >>> make_likelihood("bernoulli"), make_likelihood(Gaussian(0.1))
    """
    if isinstance(spec, Likelihood):
        return spec
    if isinstance(spec, str) and spec in LIKELIHOODS:
        return LIKELIHOODS[spec]()
    raise ValueError(
        f"likelihood must be a Likelihood or one of {', '.join(LIKELIHOODS)}, got {spec!r}"
    )
