import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from pyro_bnn.uncertainty import (
    MEASURES,
    auroc,
    expected_entropy,
    least_confidence,
    mutual_information,
    predictive_entropy,
    uncertainty,
)


def random_probs(s, n, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(s, n, c, generator=g).mul(2).softmax(-1)  # (S, N, C)


def test_identical_samples_have_no_mutual_information():
    one = random_probs(1, 6, 4)
    probs = one.expand(5, -1, -1)  # (5, 6, 4), every sample the same
    torch.testing.assert_close(predictive_entropy(probs), expected_entropy(probs))
    torch.testing.assert_close(mutual_information(probs), torch.zeros(6, dtype=torch.float64))
    by_hand = -(one[0].double() * one[0].double().log()).sum(-1)
    torch.testing.assert_close(predictive_entropy(probs), by_hand)


def test_disagreeing_one_hot_samples():
    probs = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])  # (2, 1, 3)
    assert predictive_entropy(probs).item() == pytest.approx(math.log(2))
    assert expected_entropy(probs).item() == 0.0  # 0 * log 0 = 0, no NaN
    assert mutual_information(probs).item() == pytest.approx(math.log(2))
    assert least_confidence(probs).item() == pytest.approx(0.5)


def test_uniform_is_log_c_and_a_2d_input_is_one_sample():
    for c in (2, 3, 10):
        probs = torch.full((7, c), 1.0 / c)  # (N, C): S = 1
        torch.testing.assert_close(
            predictive_entropy(probs), torch.full((7,), math.log(c), dtype=torch.float64)
        )
        assert mutual_information(probs).abs().max().item() < 1e-12
        assert least_confidence(probs)[0].item() == pytest.approx(1 - 1 / c)


def test_decomposition_and_bounds_on_random_probs():
    probs = random_probs(8, 50, 5)
    total, alea, epi = predictive_entropy(probs), expected_entropy(probs), mutual_information(probs)
    assert total.dtype == torch.float64 and total.shape == (50,)
    torch.testing.assert_close(total, alea + epi)
    assert (epi > 0).all() and (total <= math.log(5) + 1e-12).all()
    assert (epi <= math.log(8) + 1e-12).all()


def test_uncertainty_resolves_names():
    probs = random_probs(3, 4, 3)
    assert set(MEASURES) == {"entropy", "expected_entropy", "mutual_information", "max_prob"}
    torch.testing.assert_close(uncertainty(probs, "entropy"), predictive_entropy(probs))
    torch.testing.assert_close(uncertainty(probs), mutual_information(probs))
    torch.testing.assert_close(uncertainty(probs, "max_prob"), least_confidence(probs))
    with pytest.raises(ValueError, match="measure must be one of .*'entropy'.*'variance'"):
        uncertainty(probs, "variance")


@pytest.mark.parametrize(
    "bad, why",
    [
        (torch.ones(4) / 4, "must be"),
        (torch.ones(2, 2, 3, 4) / 4, "must be"),
        (torch.ones(0, 3, 4) / 4, "S >= 1"),
        (torch.tensor([[0.5, float("nan")]]), "NaN"),
        (torch.tensor([[1.5, -0.5]]), "non-negative"),
        (torch.tensor([[0.5, 0.49]]), "sum to 1"),
        (torch.tensor([[float("inf"), 0.0]]), "sum to 1"),
        ([[0.5, 0.5]], "torch.Tensor"),
    ],
)
def test_bad_probs_name_the_argument(bad, why):
    for measure in MEASURES.values():
        with pytest.raises(ValueError, match=f"probs.*{why}"):
            measure(bad)


def test_rows_within_tolerance_are_accepted():
    probs = torch.tensor([[0.5, 0.4995]])  # sums to 1 - 5e-4
    assert predictive_entropy(probs).shape == (1,)


def test_auroc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(1)
    for n_a, n_b in ((30, 50), (200, 7), (1, 1)):
        a = torch.randint(0, 6, (n_a,), generator=g).double()  # few values: many ties
        b = torch.randint(1, 8, (n_b,), generator=g).double()
        labels = [0] * n_a + [1] * n_b
        expected = roc_auc_score(labels, torch.cat([a, b]).numpy())
        assert auroc(a, b) == pytest.approx(expected, abs=1e-12)


def test_auroc_against_pairwise_count():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(40, generator=g).round(), torch.randn(60, generator=g).round()
    diff = b[None, :] - a[:, None]  # (n_a, n_b)
    pairwise = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean().item()
    assert auroc(a, b) == pytest.approx(pairwise, abs=1e-12)


def test_auroc_extremes():
    assert auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    assert auroc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    assert auroc([0.1, 0.2], [0.3, 0.2]) == pytest.approx(0.875)


@pytest.mark.parametrize("arg", ["scores_a", "scores_b"])
def test_auroc_bad_sets_name_the_argument(arg):
    good = [0.1, 0.2]
    for bad, why in (([], "non-empty"), ([[0.1, 0.2]], "1-d"), ([0.1, float("nan")], "NaN")):
        args = {"scores_a": good, "scores_b": good, arg: bad}
        with pytest.raises(ValueError, match=f"{arg} must .*{why}"):
            auroc(**args)
