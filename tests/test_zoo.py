import torch

from pyro_bnn.artifacts import matching_meta
from pyro_bnn.predict import posterior_mean
from pyro_bnn.zoo import baseline_artifact, bnn_artifact, train_baseline, train_bnn
from tests.conftest import toy_mnist


def test_train_baseline_reuses_artifact(tmp_path):
    data = toy_mnist()
    net, meta = train_baseline("FC-10", 0.0, data, root=tmp_path, max_epochs=2, progress=False)
    again, meta2 = train_baseline("FC-10", 0.0, data, root=tmp_path, max_epochs=2, progress=False)
    assert meta2["saved_at"] == meta["saved_at"]  # loaded, not retrained
    torch.testing.assert_close(again.state_dict(), net.state_dict())
    _, meta3 = train_baseline("FC-10", 0.0, data, root=tmp_path, max_epochs=3, progress=False)
    assert meta3["epochs"] == 3  # a different config retrains
    assert not (tmp_path / "baseline" / "FC-10_lam0_seed0" / "checkpoint.pt").exists()


def test_train_bnn_reuses_artifact(tmp_path):
    data = toy_mnist()
    bnn, guide, meta = train_bnn(
        -3.0, data, arch="FC-8-10", root=tmp_path, max_epochs=2, progress=False
    )
    bnn2, guide2, meta2 = train_bnn(
        -3.0, data, arch="FC-8-10", root=tmp_path, max_epochs=2, progress=False
    )
    assert meta2["saved_at"] == meta["saved_at"] and meta["epochs"] == 2
    torch.testing.assert_close(posterior_mean(bnn, guide), posterior_mean(bnn2, guide2))
    assert (tmp_path / "bnn" / "FC-8-10_rho-3_seed0" / "meta.json").is_file()


def test_artifact_specs_say_what_is_done(tmp_path):
    data = toy_mnist()
    path, config = baseline_artifact("FC-10", 1e-2, data, root=tmp_path, max_epochs=1)
    assert matching_meta(path, config) is None
    train_baseline("FC-10", 1e-2, data, root=tmp_path, max_epochs=1, progress=False)
    assert matching_meta(path, config) is not None
    path, config = bnn_artifact(-2.0, data, arch="FC-8-10", root=tmp_path, max_epochs=1)
    assert path.name == "FC-8-10_rho-2_seed0" and matching_meta(path, config) is None
    train_bnn(-2.0, data, arch="FC-8-10", root=tmp_path, max_epochs=1, progress=False)
    assert matching_meta(path, config) is not None
