import json

import pytest
import torch

from pyro_bnn import DataError
from pyro_bnn.artifacts import (
    artifact_dir,
    atomic_write,
    cached,
    load_artifact,
    matching_meta,
    save_artifact,
)


def test_round_trip(tmp_path):
    path = artifact_dir(tmp_path, "kind", "name")
    tensors = {"w": torch.randn(3, 4), "y": torch.arange(5)}
    save_artifact(path, tensors, {"lam": 1e-4, "arch": "FC-10"}, epochs=7)
    back, meta = load_artifact(path)
    torch.testing.assert_close(back, tensors)
    assert meta["config"] == {"arch": "FC-10", "lam": 1e-4} and meta["epochs"] == 7
    assert "torch" in meta["versions"]
    assert matching_meta(path, {"arch": "FC-10", "lam": 1e-4})
    assert matching_meta(path, {"arch": "FC-10", "lam": 1e-2}) is None


def test_cached_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"r": torch.ones(2)}, {"n": 2}

    path = tmp_path / "a"
    first, meta = cached(path, {"k": 1}, compute)
    second, meta2 = cached(path, {"k": 1}, compute)
    assert len(calls) == 1 and meta2["n"] == 2 and "wall_time_s" in meta
    cached(tmp_path / "b", {"k": 2}, compute)
    assert len(calls) == 2


def test_cached_says_whether_it_reused(tmp_path):
    lines = []
    path = tmp_path / "a"
    _, meta = cached(path, {"k": 1}, lambda: ({"r": torch.ones(2)}, {}), log=lines.append)
    cached(path, {"k": 1}, lambda: ({"r": torch.ones(2)}, {}), log=lines.append)
    assert lines[0].startswith(f"saved {path} (")
    assert lines[1] == f"reused {path} (saved {meta['saved_at']})"


def test_cached_never_overwrites_another_config(tmp_path):
    path = tmp_path / "a"
    cached(path, {"k": 1, "fit": {"epochs": 5}}, lambda: ({"r": torch.ones(2)}, {}))
    stamp = (path / "meta.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"fit\.epochs: 5 -> 10.*delete that folder"):
        cached(path, {"k": 1, "fit": {"epochs": 10}}, lambda: ({"r": torch.zeros(2)}, {}))
    assert (path / "meta.json").stat().st_mtime_ns == stamp
    assert load_artifact(path)[0]["r"].sum() == 2


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unfinished_artifact_is_not_reused(tmp_path):
    path = tmp_path / "x"
    save_artifact(path, {"a": torch.ones(1)}, {"k": 1})
    (path / "meta.json").unlink()  # killed before meta.json was written
    assert matching_meta(path, {"k": 1}) is None
    with pytest.raises(FileNotFoundError, match="no finished artifact"):
        load_artifact(path)


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil"
    path.mkdir()
    torch.save({"obj": object()}, path / "tensors.pt")
    (path / "meta.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(DataError, match="evil/tensors.pt.*Weights only load failed"):
        load_artifact(path)


def test_bad_names():
    with pytest.raises(ValueError, match="artifact name"):
        artifact_dir("r", "k", "../escape")
