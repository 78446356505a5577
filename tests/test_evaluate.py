import math

import pandas as pd
import pytest
import torch

from pyro_bnn.evaluate import (
    accuracy,
    as_probs,
    detect,
    ece,
    evaluate,
    evaluate_many,
    nll,
    write_table,
)


def one_hot_predictor(y, n_right, classes=10, conf=1.0):
    """Predicts the true label for the first n_right examples, label+1 after, with `conf`."""

    def predict(x):
        pred = y.clone()
        pred[n_right:] = (pred[n_right:] + 1) % classes
        probs = torch.full((len(y), classes), (1 - conf) / (classes - 1))
        probs[torch.arange(len(y)), pred] = conf
        return probs

    return predict


def test_known_accuracy_nll_and_ece():
    y = torch.arange(100) % 10
    x = torch.zeros(100, 784)
    row = evaluate(one_hot_predictor(y, 70, conf=0.8), x, y)
    assert row["acc"] == pytest.approx(0.7)
    # right: -log 0.8; wrong: -log(0.2/9)
    assert row["nll"] == pytest.approx(0.7 * -math.log(0.8) + 0.3 * -math.log(0.2 / 9))
    assert row["ece"] == pytest.approx(abs(0.8 - 0.7))  # one bin, confidence 0.8, accuracy 0.7
    assert row["runs"] == 1 and row["acc_std"] == 0.0


def test_stochastic_runs_are_averaged_with_std():
    y = torch.arange(10)
    stacked = torch.stack([one_hot_predictor(y, k)(None) for k in (5, 7, 9)])  # (3, 10, 10)
    row = evaluate(lambda x: stacked, torch.zeros(10, 784), y)
    assert row["runs"] == 3
    assert row["acc"] == pytest.approx(0.7)
    assert row["acc_std"] == pytest.approx(torch.tensor([0.5, 0.7, 0.9]).std().item())
    assert row == evaluate(lambda x: stacked[0], torch.zeros(10, 784), y, runs=1) | row


def test_metric_functions_per_run():
    y = torch.tensor([0, 1])
    probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.6, 0.4]]])
    torch.testing.assert_close(accuracy(probs, y), torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(nll(probs, y)[0], -torch.tensor([0.9, 0.8]).log().mean().double())
    # run 2: confidences 0.6 and 0.6 in one bin, both wrong -> ece 0.6
    assert ece(probs, y)[1].item() == pytest.approx(0.6)


def test_shape_and_label_errors():
    y = torch.arange(4)
    with pytest.raises(ValueError, match="probs must be"):
        evaluate(lambda x: torch.ones(3, 10) / 10, torch.zeros(4, 784), y)
    with pytest.raises(ValueError, match="x must be"):
        evaluate(lambda x: torch.ones(4, 10) / 10, torch.zeros(4), y)
    assert evaluate(lambda x: torch.ones(4, 10) / 10, torch.zeros(4, 1, 28, 28), y)["n"] == 4
    with pytest.raises(ValueError, match="labels"):
        evaluate(lambda x: torch.ones(4, 3) / 3, torch.zeros(4, 784), y)


def test_evaluate_many_and_write_table(tmp_path):
    net = torch.nn.Linear(784, 10)
    y = torch.arange(20) % 10
    sets = {"a": (torch.rand(20, 784), y), "b": (torch.rand(20, 784), y)}
    df = evaluate_many(
        {"lin": as_probs(net), "oracle": one_hot_predictor(y, 20)}, sets, progress=False
    )
    assert list(df["model"]) == ["lin", "lin", "oracle", "oracle"]
    assert (df[df.model == "oracle"]["acc"] == 1.0).all()
    write_table(df, tmp_path / "t")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back.shape == df.shape and (tmp_path / "t.md").read_text().startswith("| model")


def test_deterministic_net_has_no_mutual_information():
    y = torch.arange(20) % 10
    row = evaluate(one_hot_predictor(y, 15, conf=0.8), torch.zeros(20, 784), y, runs=3)
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2 / 9))  # same entropy for every input
    assert row["runs"] == 3
    assert row["entropy"] == pytest.approx(h) and row["expected_entropy"] == pytest.approx(h)
    assert row["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    assert row["acc"] == pytest.approx(0.75) and row["acc_std"] == 0.0


def test_uncertainty_columns_on_a_known_stack():
    y = torch.tensor([0, 1])
    # input 0: runs agree on [0.5, 0.5]; input 1: runs one-hot on different classes
    stacked = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])  # (2, 2, 2)
    row = evaluate(lambda x: stacked, torch.zeros(2, 3), y)
    log2 = math.log(2)
    assert row["entropy"] == pytest.approx((log2 + log2) / 2)
    assert row["expected_entropy"] == pytest.approx((log2 + 0.0) / 2)
    assert row["mutual_information"] == pytest.approx((0.0 + log2) / 2)


def test_unnormalised_probs_are_rejected():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        evaluate(lambda x: torch.full((2, 3), 0.5), torch.zeros(2, 3), y)


def test_runs_below_one_are_rejected():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="runs must be >= 1"):
        evaluate(lambda x: torch.full((2, 2), 0.5), torch.zeros(2, 3), y, runs=0)


def disagreeing_predictor(classes=4):
    """Two draws per call: they agree on inputs whose first feature is 0, and put all mass on
    different classes where it is 1, so the second kind has mutual information log 2."""

    def predict(x):
        n = len(x)
        agree = torch.zeros(n, classes)
        agree[:, 0] = 1.0
        other = agree.clone()
        flag = x[:, 0] > 0
        other[flag, 0], other[flag, 1] = 0.0, 1.0
        return torch.stack([agree, other])  # (2, N, C)

    return predict


def test_detect_flags_the_inputs_that_runs_disagree_on():
    x_in, x_out = torch.zeros(30, 5), torch.ones(20, 5)
    out = detect(disagreeing_predictor(), x_in, x_out)
    assert out == {
        "measure": "mutual_information",
        "auroc": 1.0,
        "in_mean": 0.0,
        "out_mean": pytest.approx(math.log(2)),
        "n_in": 30,
        "n_out": 20,
    }
    swapped = detect(disagreeing_predictor(), x_out, x_in, measure="entropy", runs=2)
    assert swapped["auroc"] == 0.0 and swapped["in_mean"] == pytest.approx(math.log(2))
    # expected entropy is 0 everywhere (one-hot draws): the sets cannot be told apart
    assert detect(disagreeing_predictor(), x_in, x_out, measure="expected_entropy")["auroc"] == 0.5


def test_detect_half_flagged_set():
    x_out = torch.cat([torch.ones(10, 5), torch.zeros(10, 5)])
    out = detect(disagreeing_predictor(), torch.zeros(10, 5), x_out)
    # half the out set scores log 2 (above every in score), half ties the in set at 0
    assert out["auroc"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert out["out_mean"] == pytest.approx(math.log(2) / 2)


def test_detect_errors_name_the_argument():
    fn, x = disagreeing_predictor(), torch.zeros(4, 5)
    with pytest.raises(ValueError, match="measure must be one of"):
        detect(fn, x, x, measure="variance")
    with pytest.raises(ValueError, match="x_in must be a non-empty"):
        detect(fn, torch.zeros(0, 5), x)
    with pytest.raises(ValueError, match="x_out must be a non-empty"):
        detect(fn, x, torch.zeros(4))
    with pytest.raises(ValueError, match="runs must be >= 1"):
        detect(fn, x, x, runs=0)
    with pytest.raises(ValueError, match="predict must return class probabilities"):
        detect(lambda x: (torch.zeros(len(x)), torch.ones(len(x))), x, x)
    with pytest.raises(ValueError, match=r"predict must give \(R, 4, C\)"):
        detect(lambda x: torch.full((3, 2), 0.5), x, x)


def test_regression_exact_mean():
    y = torch.linspace(-2, 2, 9)
    row = evaluate(lambda x: (y.clone(), torch.ones(9)), torch.zeros(9, 3), y)
    assert row == {
        "n": 9,
        "runs": 1,
        "rmse": 0.0,
        "nll": pytest.approx(0.5 * math.log(2 * math.pi)),
        "coverage_95": 1.0,
    }


def test_regression_mixture_over_draws_by_hand():
    y = torch.tensor([2.0, 3.5])
    loc = torch.tensor([[1.0, 1.0], [-1.0, 1.0]])  # (R=2, N=2)
    scale = torch.tensor([[1.0, 0.5], [1.0, 0.5]])
    row = evaluate(lambda x: (loc, scale), torch.zeros(2, 3), y)

    def normal(v, m, s):
        return math.exp(-0.5 * ((v - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    density_0 = 0.5 * (normal(2, 1, 1) + normal(2, -1, 1))
    density_1 = normal(3.5, 1, 0.5)
    assert row["runs"] == 2
    assert row["rmse"] == pytest.approx(math.sqrt((2.0**2 + 2.5**2) / 2))
    assert row["nll"] == pytest.approx(-(math.log(density_0) + math.log(density_1)) / 2)
    # input 0: mean 0, total sd sqrt(1 + 1): |2 - 0| < 1.96 * 1.414 -> inside (it would be
    # outside without the spread of the draws' means); input 1: |3.5 - 1| > 1.96 * 0.5
    assert row["coverage_95"] == 0.5


def test_regression_runs_stack_draws_and_coverage_is_near_95():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(20_000, generator=g)
    calls = iter([(torch.zeros(20_000), torch.ones(20_000))] * 2)
    row = evaluate(lambda x: next(calls), torch.zeros(20_000, 1), y, runs=2)
    assert row["runs"] == 2
    assert row["coverage_95"] == pytest.approx(0.95, abs=0.005)
    assert row["nll"] == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5, abs=0.02)


def test_regression_errors_name_the_argument():
    x, n = torch.zeros(3, 2), 3
    y = torch.zeros(n)
    cases = [
        (lambda x: (torch.zeros(n), torch.ones(n)), torch.zeros(n, dtype=torch.long), "y must be"),
        (lambda x: (torch.zeros(2), torch.ones(2)), y, "loc must be"),
        (lambda x: (torch.zeros(1, 1, n), torch.ones(1, 1, n)), y, "loc must be"),
        (lambda x: (torch.zeros(0, n), torch.ones(0, n)), y, "loc must be"),
        (lambda x: (torch.zeros(n), torch.ones(2, n)), y, "scale must have"),
        (lambda x: (torch.zeros(n), torch.zeros(n)), y, "scale must be finite and > 0"),
        (lambda x: (torch.full((n,), float("nan")), torch.ones(n)), y, "loc must be finite"),
        (lambda x: (torch.zeros(n), torch.ones(n), 1), y, "predict must return"),
        (lambda x: ([0.0] * n, torch.ones(n)), y, "loc and scale must be tensors"),
    ]
    for predict, target, message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate(predict, x, target)
    mixed = iter([(torch.zeros(n), torch.ones(n)), torch.full((n, 2), 0.5)])
    with pytest.raises(ValueError, match="predict must return"):
        evaluate(lambda x: next(mixed), x, y, runs=2)
    mixed = iter([torch.full((n, 2), 0.5), (torch.zeros(n), torch.ones(n))])
    with pytest.raises(ValueError, match="predict must return"):
        evaluate(lambda x: next(mixed), x, torch.zeros(n, dtype=torch.long), runs=2)


def test_as_probs_chunks_and_takes_an_empty_batch():
    net = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    assert torch.allclose(as_probs(net, chunk_size=2)(x), net(x).softmax(-1).detach())
    # an attack with no survivors hands over zero images: (0, C), not an error
    assert as_probs(net)(x[:0]).shape == (0, 3)
