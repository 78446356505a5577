import math

import pyro.distributions as dist
import pytest
import torch

from pyro_bnn.priors import (
    PackedPrior,
    ScaleMixtureNormal,
    from_normal_scores,
    make_prior,
    pack_prior,
    to_normal_scores,
)

PI, S1, S2 = 0.5, math.exp(-1), math.exp(-7)


def reference_log_prob(w: float, pi=PI, s1=S1, s2=S2) -> float:
    """Independent float64 computation with Python's math module, in log space."""
    a = math.log(pi) - math.log(s1) - 0.5 * math.log(2 * math.pi) - w * w / (2 * s1 * s1)
    b = math.log1p(-pi) - math.log(s2) - 0.5 * math.log(2 * math.pi) - w * w / (2 * s2 * s2)
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


EXTREME_W = [0.0, 1e-7, 1e-4, 1e-3, 5e-3, 0.01, 0.1, 0.5, 1.0, 10.0, 100.0, 1e3]


def test_log_prob_matches_reference_at_extreme_w():
    w = torch.tensor(EXTREME_W + [-x for x in EXTREME_W])
    ours = ScaleMixtureNormal().log_prob(w)
    ref = torch.tensor([reference_log_prob(v) for v in w.tolist()], dtype=torch.float64)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), ref, rtol=2e-7, atol=1e-5)
    assert ours[0].item() == pytest.approx(reference_log_prob(0.0), abs=1e-5)  # ~ +5.8 at 0
    assert ours[11].item() == pytest.approx(-3.69e6, rel=1e-2)  # |w| = 1e3 stays finite


def test_gradient_is_exact_and_finite():
    w = torch.tensor(EXTREME_W, dtype=torch.float64, requires_grad=True)
    ScaleMixtureNormal().log_prob(w).sum().backward()
    ref = []
    for v in EXTREME_W:  # d/dw log p = -w * (r / s1^2 + (1 - r) / s2^2), r from log space
        a = reference_log_prob(v) - (
            math.log(PI) - math.log(S1) - 0.5 * math.log(2 * math.pi) - v * v / (2 * S1 * S1)
        )
        r = math.exp(-a)
        ref.append(-v * (r / S1**2 + (1 - r) / S2**2))
    torch.testing.assert_close(w.grad, torch.tensor(ref, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_agrees_with_torch_mixture_for_moderate_w():
    mix = dist.MixtureSameFamily(
        dist.Categorical(torch.tensor([0.3, 0.7], dtype=torch.float64)),
        dist.Normal(
            torch.zeros(2, dtype=torch.float64), torch.tensor([0.8, 0.05], dtype=torch.float64)
        ),
    )
    w = torch.linspace(-3, 3, 101, dtype=torch.float64)
    torch.testing.assert_close(ScaleMixtureNormal(0.3, 0.8, 0.05).log_prob(w), mix.log_prob(w))


def test_shapes_expand_and_sample_moments():
    prior = ScaleMixtureNormal().expand([3, 4])
    assert prior.batch_shape == (3, 4) and prior.event_shape == ()
    assert prior.sample((5,)).shape == (5, 3, 4)
    assert prior.to_event(2).log_prob(torch.zeros(7, 3, 4)).shape == (7,)
    assert prior.mean.shape == (3, 4)
    draws = ScaleMixtureNormal(0.3, 2.0, 0.1).sample((400_000,))
    assert draws.var().item() == pytest.approx(0.3 * 4 + 0.7 * 0.01, rel=0.03)
    assert (draws.abs() < 0.3).float().mean().item() == pytest.approx(
        0.7 * 0.997 + 0.3 * 0.118, abs=0.01
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"pi": 0.0}, "pi"),
        ({"pi": 1.5}, "pi"),
        ({"sigma1": -1.0}, "sigma1"),
        ({"sigma2": float("nan")}, "sigma2"),
    ],
)
def test_bad_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ScaleMixtureNormal(**kwargs)


def test_nan_value_rejected_when_validating():
    with pytest.raises(ValueError):
        ScaleMixtureNormal(validate_args=True).log_prob(torch.tensor([0.0, float("nan")]))


SHAPES = {
    "layers.0.weight": (3, 4),
    "layers.0.bias": (3,),
    "layers.1.weight": (2, 3),
    "layers.1.bias": (2,),
}


def test_iid_prior_packs_to_one_expanded_distribution():
    packed = pack_prior(dist.Laplace(0.0, 2.0), SHAPES)
    assert packed.event_shape == (12 + 3 + 6 + 2,)
    w = torch.randn(23)
    torch.testing.assert_close(packed.log_prob(w), dist.Laplace(0.0, 2.0).log_prob(w).sum())


def test_per_layer_and_per_parameter_priors():
    first, rest = dist.Normal(0.0, 0.1), ScaleMixtureNormal()
    packed = pack_prior({"layers.0.weight": first, "*": rest}, SHAPES)
    assert isinstance(packed, PackedPrior)
    w = torch.randn(2, 23)  # a batch of two flat vectors
    expected = first.log_prob(w[:, :12]).sum(-1) + rest.log_prob(w[:, 12:]).sum(-1)
    torch.testing.assert_close(packed.log_prob(w), expected)
    by_fn = pack_prior(lambda name, shape: first if name.endswith("bias") else rest, SHAPES)
    assert by_fn.log_prob(w).shape == (2,)
    assert packed.sample((5,)).shape == (5, 23)
    assert packed.mean.shape == (23,) and packed.variance[0].item() == pytest.approx(0.01)


def test_prior_errors():
    with pytest.raises(ValueError, match="no entry for parameter 'layers.1.bias'"):
        pack_prior(
            {"layers.0.*": dist.Normal(0.0, 1.0), "layers.1.weight": dist.Normal(0.0, 1.0)}, SHAPES
        )
    with pytest.raises(ValueError, match="univariate"):
        pack_prior(dist.Normal(torch.zeros(3), 1.0), SHAPES)
    with pytest.raises(ValueError, match="known priors: scale-mixture"):
        make_prior("horseshoe")
    assert isinstance(make_prior("scale-mixture", pi=0.25), ScaleMixtureNormal)


@pytest.mark.parametrize(
    "pi, sigma1, sigma2",
    [(0.5, math.exp(-1), math.exp(-7)), (0.25, 1.0, math.exp(-8)), (0.9, 0.01, 2.0),
     (0.5, 1.0, 1e-6)],
)  # fmt: skip
def test_normal_scores_carry_a_standard_normal_onto_the_prior(pi, sigma1, sigma2):
    """w = F^-1(Phi(eta)): the mixture's CDF, written here from its two normal CDFs, gives
    back Phi(eta), and its tail from the two normal tails; to_normal_scores inverts it
    within 1e-8 out to |eta| = 45, past the quantile table; dw/deta matches finite
    differences; and normal draws of eta become draws of the prior."""
    prior = ScaleMixtureNormal(pi, sigma1, sigma2)
    eta = torch.cat([torch.linspace(-45, 45, 90001, dtype=torch.float64),
                     torch.logspace(-9, 0, 20, dtype=torch.float64)])  # fmt: skip
    w = from_normal_scores(prior, eta)
    assert (w.diff()[:90000] > 0).all()  # monotone across the table's end at 40
    cdf = pi * torch.special.ndtr(w / sigma1) + (1 - pi) * torch.special.ndtr(w / sigma2)
    assert (cdf - torch.special.ndtr(eta)).abs().max() < 1e-10
    up = eta > 5  # the upper tail: log P(W > w) = log (1 - Phi(eta)), relative to it
    log_ndtr = torch.special.log_ndtr
    log_tail = torch.logaddexp(math.log(pi) + log_ndtr(-w[up] / sigma1),
                               math.log1p(-pi) + log_ndtr(-w[up] / sigma2))  # fmt: skip
    assert ((log_tail - torch.special.log_ndtr(-eta[up])).abs() / eta[up] ** 2).max() < 1e-10
    assert (to_normal_scores(prior, w) - eta).abs().max() < 1e-8
    odd = torch.tensor([math.nan, math.inf, -math.inf], dtype=torch.float64)  # pass through
    torch.testing.assert_close(from_normal_scores(prior, odd), odd, equal_nan=True)
    at = torch.tensor([-3.0, -0.9, -0.3, 0.2, 0.7, 2.5], dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(from_normal_scores(prior, at).sum(), at)
    h = 1e-6
    up, down = (from_normal_scores(prior, at.detach() + d) for d in (h, -h))
    torch.testing.assert_close(slope, (up - down) / (2 * h), rtol=1e-5, atol=0)
    g = torch.Generator().manual_seed(0)
    drawn = from_normal_scores(prior, torch.randn(100_000, generator=g))  # float32 in and out
    assert drawn.dtype == torch.float32
    torch.testing.assert_close(drawn.var(), prior.variance, rtol=0.03, atol=0)
    (narrow, p_narrow), (wide, p_wide) = sorted([(sigma1, pi), (sigma2, 1 - pi)])
    share = (drawn.abs() < narrow).float().mean()  # P(|w| < the narrow sd), from the CDFs
    expect = p_narrow * math.erf(1 / math.sqrt(2)) + p_wide * math.erf(narrow / wide / math.sqrt(2))
    assert abs(float(share) - expect) < 0.005


def test_normal_scores_of_a_normal_prior_are_its_standardised_weights():
    prior = dist.Normal(torch.full((3,), 1.0), 2.0).to_event(1)
    eta = torch.tensor([-1.0, 0.0, 0.5])
    torch.testing.assert_close(from_normal_scores(prior, eta), torch.tensor([-1.0, 1.0, 2.0]))
    torch.testing.assert_close(to_normal_scores(prior, torch.tensor([-1.0, 1.0, 2.0])), eta)
    with pytest.raises(ValueError, match="Laplace"):
        from_normal_scores(dist.Laplace(0.0, 1.0), eta)
