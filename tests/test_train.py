import functools

import pytest
import torch
from torch import nn

from pyro_bnn.evaluate import as_probs, evaluate
from pyro_bnn.nets import MLP
from pyro_bnn.train import _describe_callable, fit_torch, run_epochs, sgd
from tests.conftest import toy_mnist


class Counter(nn.Module):
    """A 'model' whose single weight counts optimisation steps."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def scripted_run(val_accs, *, patience, checkpoint=None, fail_at=None, calls=None, callbacks=()):
    model = Counter()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step(x, y):
        with torch.no_grad():
            model.w += 1
        if calls is not None:
            calls.append(1)
        return {"loss": torch.tensor(1.0)}

    def validate():
        e = int(model.w.item()) // 2 - 1  # 0-based epoch: two steps per epoch
        if fail_at is not None and e == fail_at:
            raise KeyboardInterrupt
        return {"val_acc": val_accs[e]}

    result = run_epochs(
        model,
        opt,
        step,
        lambda epoch: [(None, None)] * 2,  # two steps per epoch
        validate,
        max_epochs=len(val_accs),
        patience=patience,
        monitor="val_acc",
        callbacks=callbacks,
        checkpoint=checkpoint,
        progress=False,
        desc="t",
        config={"k": 1},
    )
    return model, result


def test_early_stopping_stops_and_restores_best():
    accs = [0.1, 0.5, 0.3, 0.5, 0.2, 0.9, 0.95]
    model, result = scripted_run(accs, patience=3)
    assert result.stopped_early and result.epochs == 5 and result.best_epoch == 2
    assert result.best_val == 0.5
    assert model.w.item() == 2 * 2  # weights as they were after epoch 2 (2 steps per epoch)
    assert [h["val_acc"] for h in result.history] == accs[:5]


def test_runs_to_max_epochs_without_patience_hit():
    model, result = scripted_run([0.1, 0.2, 0.3], patience=5)
    assert not result.stopped_early and result.epochs == 3 and result.best_epoch == 3
    assert model.w.item() == 6


def test_killed_run_resumes_from_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    accs = [0.1, 0.2, 0.3, 0.4, 0.5]
    with pytest.raises(KeyboardInterrupt):
        scripted_run(accs, patience=5, checkpoint=ckpt, fail_at=3)
    calls = []
    model, result = scripted_run(accs, patience=5, checkpoint=ckpt, calls=calls)
    # epochs 1-3 came from the checkpoint: only epochs 4 and 5 ran (2 steps each)
    assert len(calls) == 4 and result.epochs == 5
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert model.w.item() == 10


def test_fit_torch_learns_and_restores_best(small):
    torch.manual_seed(0)
    net = MLP((100, 100, 10))
    result = fit_torch(net, small, max_epochs=12, patience=2, progress=False)
    acc = evaluate(as_probs(net), small.val.x, small.val.y)["acc"]
    assert acc == pytest.approx(result.best_val)
    assert acc > 0.8  # 2,000 real MNIST images are enough for > 80 %
    assert result.history[result.best_epoch - 1]["val_acc"] == result.best_val


def test_keep_last_returns_the_final_epoch_as_a_run_without_validation_does(small):
    """Validation draws no randomness, so with keep='last' the weights are exactly those of
    the same run with no validation at all (which can only keep its last epoch)."""
    train, val = (small.train.x, small.train.y), (small.val.x, small.val.y)
    nets, results = {}, {}
    for name, kw in (("last", {"val": val, "keep": "last"}), ("none", {"val": None}),
                     ("best", {"val": val})):  # fmt: skip
        torch.manual_seed(0)
        nets[name] = MLP((10,))
        results[name] = fit_torch(nets[name], train, max_epochs=6, patience=None,
                                  optimizer=sgd(lr=0.05), progress=False, **kw)  # fmt: skip
    for a, b in zip(nets["last"].parameters(), nets["none"].parameters()):
        assert torch.equal(a, b)
    assert results["last"].best_epoch == 6
    assert results["last"].best_val == results["last"].history[-1]["val_acc"]
    best = results["best"]
    assert best.best_val == max(r["val_acc"] for r in best.history)


def test_l2_penalty_shrinks_weights():
    data = toy_mnist()
    norms = {}
    for lam in (0.0, 1.0):
        torch.manual_seed(0)
        net = MLP((10,))
        fit_torch(
            net, data, lam=lam, max_epochs=5, patience=5, progress=False, optimizer=sgd(lr=0.05)
        )
        norms[lam] = net.layers[0].weight.norm().item()
    assert norms[1.0] < 0.9 * norms[0.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"max_epochs": 1.5},
        {"patience": -1},
        {"lam": float("nan")},
        {"adversary": 0.5},
        {"keep": "first"},
    ],
)
def test_bad_settings_raise_naming_the_argument(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        fit_torch(MLP((10,)), toy_mnist(), progress=False, **bad)


def _shift(model, x, y, *, delta, seen):
    seen.append((model, len(x)))
    return x + delta


def test_adversary_replaces_each_training_minibatch_and_leaves_validation_clean():
    """Training on adversary(x) = x + delta is training on the shifted data, step for step,
    while validation (and so the best epoch) still sees clean x."""
    data = toy_mnist()
    delta = 0.3 * torch.randn(data.train.x.shape[1], generator=torch.Generator().manual_seed(1))
    shifted = (data.train.x + delta, data.train.y)
    nets, seen = [], []
    for kwargs in (
        {"data": data, "adversary": functools.partial(_shift, delta=delta, seen=seen)},
        {"data": shifted, "val": (data.val.x, data.val.y)},
    ):
        torch.manual_seed(0)
        net = MLP((10,))
        fit_torch(net, max_epochs=3, patience=None, progress=False, **kwargs)
        nets.append(net)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b)
    assert len(seen) == 3 * 2 and all(model is nets[0] for model, _ in seen)  # 256 / 128
    assert {n for _, n in seen} == {128}


def test_a_partial_adversary_is_described_without_a_memory_address():
    """A checkpoint's config must match in the process that resumes it, where a
    function's repr has another address."""
    described = _describe_callable(functools.partial(_shift, delta=0.5, seen=[]))
    assert "0x" not in described and described.startswith("functools.partial(")
    assert described.endswith("test_train._shift, delta=0.5, seen=[])")


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"momentum": 1.0}])
def test_bad_sgd_settings_raise_naming_the_argument(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        sgd(**bad)


def test_patience_none_and_a_callback_replace_early_stopping():
    accs = [0.5, 0.1, 0.1, 0.1, 0.1, 0.1]
    model, result = scripted_run(accs, patience=None)
    assert not result.stopped_early and result.epochs == 6 and result.best_epoch == 1
    seen = []

    def stop_at_three(record):
        seen.append(record["epoch"])
        return record["epoch"] == 3

    model, result = scripted_run(accs, patience=None, callbacks=[stop_at_three])
    assert seen == [1, 2, 3] and result.stopped_early and result.epochs == 3


@pytest.mark.parametrize("engine", ["pyro", "stack"])
def test_fit_svi_resumes_after_kill(tmp_path, monkeypatch, engine):
    """Killed in epoch 3 and rerun: epochs 1-2 come from the checkpoint, and the guide ends
    where an uninterrupted run ends."""
    import pyro_bnn.stack as stack_module
    import pyro_bnn.train as train_module
    from pyro_bnn.bnn import BayesianMLP
    from pyro_bnn.guides import make_guide
    from pyro_bnn.train import fit_svi

    module = stack_module if engine == "stack" else train_module
    data = toy_mnist()
    real = module.predictive
    calls, die_at = [], [3]

    def failing(*args, **kwargs):  # validation runs once per epoch; die in epoch 3
        calls.append(1)
        if len(calls) == die_at[0]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    def run(checkpoint=tmp_path / "ckpt.pt"):
        bnn = BayesianMLP((8, 10))
        guide = make_guide("softplus-normal", bnn)
        result = fit_svi(
            bnn,
            guide,
            data,
            max_epochs=5,
            patience=5,
            optimizer=sgd(lr=0.01),
            progress=False,
            checkpoint=checkpoint,
            engine=engine,
        )
        return result, guide

    monkeypatch.setattr(module, "predictive", failing)
    with pytest.raises(KeyboardInterrupt):
        run()
    calls.clear()
    die_at[0] = -1
    result, guide = run()
    assert result.epochs == 5 and [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert len(calls) == 3  # epochs 3, 4, 5 ran again; 1 and 2 came from the checkpoint
    whole, whole_guide = run(checkpoint=None)
    assert [h["val_acc"] for h in whole.history] == [h["val_acc"] for h in result.history]
    torch.testing.assert_close(whole_guide.state_dict(), guide.state_dict(), rtol=0, atol=0)
