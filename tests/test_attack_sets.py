import pytest
import torch

from pyro_bnn.attacks import distortion, min_norm_attack
from pyro_bnn.nets import MLP
from pyro_bnn.train import fit_torch, sgd
from runs.study.attack_sets import attack_config, attack_set, get_protocol
from runs.study.naming import config_hash


@pytest.fixture(scope="module")
def net(small):
    torch.manual_seed(0)
    model = MLP((32, 10))
    fit_torch(model, small, max_epochs=4, patience=4, optimizer=sgd(lr=0.01), progress=False)
    return model.eval().requires_grad_(False)


def counting(net):
    calls = []

    def fn(x):
        calls.append(len(x))
        return net(x)

    return fn, calls


def test_attack_set_stores_everything_and_is_reused(net, small, tmp_path):
    fn, calls = counting(net)
    lines = []
    kwargs = {"limit": 40, "root": tmp_path, "steps": 10, "progress": False, "log": lines.append}
    tensors, meta = attack_set("net", fn, small, fingerprint={"v": 1}, **kwargs)
    assert calls, "the first call attacks"
    (folder,) = (tmp_path / "attack-rigorous").iterdir()
    assert folder.name.startswith("net_") and (folder / "meta.json").is_file()
    assert tensors["r"].shape == (40, 784) and tensors["success"].dtype == torch.bool
    torch.testing.assert_close(tensors["y"], small.test.y[:40])
    torch.testing.assert_close(tensors["index"], torch.arange(40))
    config = meta["config"]
    assert config["source"] == "net" and config["split"] == "test" and config["n"] == 40
    assert config["fingerprint"] == {"v": 1} and config["attack"]["gamma"] == 0.05
    assert meta["summary"] == pytest.approx(distortion(tensors["r"], tensors["success"]))
    direct = min_norm_attack(net, small.test.x[:40], small.test.y[:40], steps=10, progress=False)
    torch.testing.assert_close(tensors["r"], direct.r)

    calls.clear()
    again, meta2 = attack_set("net", fn, small, fingerprint={"v": 1}, **kwargs)
    assert not calls and meta2["saved_at"] == meta["saved_at"]  # loaded, not recomputed
    torch.testing.assert_close(again["r"], tensors["r"])
    torch.testing.assert_close(again["success"], tensors["success"])
    assert lines[-1] == f"reused {folder} (saved {meta['saved_at']})"

    attack_set("net", fn, small, fingerprint={"v": 2}, **kwargs)  # a retrained model
    assert calls and len(list((tmp_path / "attack-rigorous").iterdir())) == 2  # both kept


def test_paper_and_eot_protocols(net, small, tmp_path):
    tensors, meta = attack_set(
        "net", net, small, protocol="paper", split="val", limit=20, root=tmp_path, steps=5,
        progress=False,
    )  # fmt: skip
    assert meta["config"]["attack"]["lr"] == 0.01 and meta["config"]["split"] == "val"
    assert (tensors["r"] >= 0).all()
    sample_fn = lambda x, k: net(x).softmax(-1).expand(k, -1, -1)  # noqa: E731
    tensors, meta = attack_set(
        "net", sample_fn, small, protocol="eot", limit=20, root=tmp_path, steps=5, k=2,
        progress=False,
    )  # fmt: skip
    assert meta["config"]["attack"]["k"] == 2 and "output" not in meta["config"]["attack"]
    assert len(list((tmp_path / "attack-eot").glob("net_*/meta.json"))) == 1


def test_attack_config_is_complete_and_strict():
    assert attack_config("paper", steps=100) | {"steps": 4000} == attack_config("paper")
    assert attack_config("rigorous")["steps"] == 100
    eot = attack_config("eot")
    assert eot["k"] == 20 and eot["passes"] == 32 and eot["gamma"] == 0.05
    assert eot["confidence"] == 0.8  # eot_attack's own default wins over min_norm_attack's
    with pytest.raises(ValueError, match="lrate"):
        attack_config("paper", lrate=0.1)
    with pytest.raises(ValueError, match="steps"):
        attack_config("rigorous", steps=0)
    with pytest.raises(ValueError, match="rigorous"):
        get_protocol("fgsm")


def test_targeted_passes_change_the_config_only_when_asked_for():
    """Sets stored before n_targets existed keep their hashes (those of commit c5a9acc)."""
    assert config_hash(attack_config("rigorous")) == "00d6fdc8"
    assert config_hash(attack_config("eot")) == "7a42a2a0"
    assert attack_config("rigorous", n_targets=0) == attack_config("rigorous")
    assert attack_config("rigorous", n_targets=2)["n_targets"] == 2
    assert attack_config("eot", n_targets=1)["n_targets"] == 1


def test_bad_arguments_raise(net, small, tmp_path):
    with pytest.raises(ValueError, match="limit"):
        attack_set("net", net, small, limit=0, root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        attack_set("net", net, small, split="dev", root=tmp_path)
    with pytest.raises(ValueError, match="artifact name"):
        attack_set("a/b", net, small, root=tmp_path)
