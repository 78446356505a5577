import math

import pandas as pd
import pytest
import torch

from pyro_bnn.evaluate import accuracy, as_probs, ece, evaluate, evaluate_many, nll, write_table


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
        evaluate(lambda x: torch.ones(4, 10) / 10, torch.zeros(4, 2, 3), y)
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
