from dataclasses import replace

import pytest
import torch
from torch import nn

from pyro_bnn.artifacts import matching_meta
from pyro_bnn.predict import posterior_mean
from runs.study.config import BNN, PAPER_SOURCE, PLAIN
from runs.study.zoo import baseline_artifact, bnn_artifact, train_baseline, train_bnn
from tests.conftest import toy_mnist


def epochs(n, config=PLAIN):
    return replace(config, max_epochs=n)


def test_train_baseline_reuses_artifact_and_says_so(tmp_path):
    data = toy_mnist()
    lines = []
    kw = {"root": tmp_path, "progress": False, "log": lines.append}
    net, meta = train_baseline("FC-10", 0.0, data, train=epochs(2), **kw)
    again, meta2 = train_baseline("FC-10", 0.0, data, train=epochs(2), **kw)
    assert meta2["saved_at"] == meta["saved_at"]  # loaded, not retrained
    torch.testing.assert_close(again.state_dict(), net.state_dict())
    (folder,) = (tmp_path / "baseline").iterdir()
    assert folder.name.startswith("FC-10_lam0_seed0_")
    assert lines == [lines[0], f"reused {folder} (saved {meta['saved_at']})"]
    assert lines[0].startswith(f"saved {folder} (")
    assert not (folder / "checkpoint.pt").exists()


def test_a_changed_setting_never_overwrites_a_finished_net(tmp_path):
    data = toy_mnist()
    _, meta = train_baseline("FC-10", 0.0, data, train=epochs(2), root=tmp_path, progress=False)
    (first,) = (tmp_path / "baseline").iterdir()
    stamp = (first / "meta.json").stat().st_mtime_ns
    _, meta3 = train_baseline("FC-10", 0.0, data, train=epochs(3), root=tmp_path, progress=False)
    assert meta3["epochs"] == 3 and meta["epochs"] == 2  # a different config trains anew ...
    assert len(list((tmp_path / "baseline").iterdir())) == 2  # ... beside the first
    assert (first / "meta.json").stat().st_mtime_ns == stamp


def test_train_bnn_reuses_artifact(tmp_path):
    data = toy_mnist()
    kw = {"arch": "FC-8-10", "train": epochs(2, BNN), "root": tmp_path, "progress": False}
    bnn, guide, meta = train_bnn(-3.0, data, **kw)
    bnn2, guide2, meta2 = train_bnn(-3, data, **kw)  # an int rho_init is the same config
    assert meta2["saved_at"] == meta["saved_at"] and meta["epochs"] == 2
    torch.testing.assert_close(posterior_mean(bnn, guide), posterior_mean(bnn2, guide2))
    assert meta["config"]["val_samples"] == BNN.val_samples == 10
    assert meta["config"]["lr"] == 1e-3 and meta["config"]["momentum"] == 0.95


def test_artifact_specs_say_what_is_done(tmp_path):
    data = toy_mnist()
    path, config = baseline_artifact("FC-10", 1e-2, data, train=epochs(1), root=tmp_path)
    assert matching_meta(path, config) is None
    train_baseline("FC-10", 1e-2, data, train=epochs(1), root=tmp_path, progress=False)
    assert matching_meta(path, config) is not None
    assert "val_samples" not in config and config["batch_size"] == 128
    path, config = bnn_artifact(-2.0, data, arch="FC-8-10", train=epochs(1, BNN), root=tmp_path)
    assert path.name.startswith("FC-8-10_rho-2_seed0_") and matching_meta(path, config) is None
    train_bnn(-2.0, data, arch="FC-8-10", train=epochs(1, BNN), root=tmp_path, progress=False)
    assert matching_meta(path, config) is not None


def test_bad_names_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="known guides"):
        train_bnn(-3.0, toy_mnist(), arch="FC-8-10", guide="laplace", root=tmp_path)


def test_paper_sources_keep_their_last_epoch_and_every_older_config_its_hash():
    assert "keep" not in PLAIN.settings() and "keep" not in BNN.settings(svi=True)
    assert PAPER_SOURCE.settings() == PLAIN.settings() | {"max_epochs": 200, "patience": None,
                                                          "keep": "last"}  # fmt: skip
    with pytest.raises(ValueError, match="keep='last' is for plain nets"):
        PAPER_SOURCE.settings(svi=True)


def test_an_adam_bnn_trains_sigma_and_the_sgd_configs_keep_their_hash(tmp_path):
    """'adam' joins the config (SGD's stays out, so no saved net changes its hash), and it
    moves sigma far more than the paper's SGD does in the same steps."""
    assert "optimizer" not in BNN.settings(svi=True) and "optimizer" not in PLAIN.settings()
    adam = replace(BNN, max_epochs=2, optimizer="adam")
    assert adam.settings(svi=True)["optimizer"] == "adam"
    assert isinstance(adam.fit_kwargs(svi=True)["optimizer"](nn.Linear(2, 2).parameters()),
                      torch.optim.Adam)  # fmt: skip
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adam'"):
        replace(BNN, optimizer="lbfgs")
    data, moved = toy_mnist(), {}
    for name, train in (("sgd", replace(BNN, max_epochs=2)), ("adam", adam)):
        _, guide, _ = train_bnn(-3.0, data, arch="FC-8-10", prior="normal", train=train,
                                root=tmp_path, progress=False)  # fmt: skip
        moved[name] = float((guide.rhos.weights.detach() + 3.0).abs().median())
    assert moved["adam"] > 10 * moved["sgd"]
