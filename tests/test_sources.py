from dataclasses import replace

import pandas as pd
import pytest

from runs.cli import main
from runs.study.config import PLAIN
from runs.study.sources import attack_sources, source_table, train_sources
from tests.conftest import toy_mnist


def test_train_sources_trains_each_arch_and_lambda_once(small, tmp_path):
    data = small
    kwargs = {"archs": ["FC-10", "FC-8-10"], "lams": [0.0, 1.0], "root": tmp_path}
    kwargs |= {"train": replace(PLAIN, max_epochs=2), "progress": False}
    sources = train_sources(data, **kwargs)
    names = [s.name for s in sources]
    assert names == ["FC-10_lam0_seed0", "FC-10_lam1_seed0", "FC-8-10_lam0_seed0",
                     "FC-8-10_lam1_seed0"]  # fmt: skip
    assert all(len(list((tmp_path / "source").glob(f"{n}_*/meta.json"))) == 1 for n in names)
    assert not any(p.requires_grad for p in sources[0].net.parameters())
    again = train_sources(data, **kwargs)
    assert [s.fingerprint for s in again] == [s.fingerprint for s in sources]  # reused

    table = source_table(sources, data)
    assert list(table["source"]) == names
    assert table["test_acc"].between(0, 1).all()
    assert (table["test_err"] == 1 - table["test_acc"]).all()
    assert table.loc[1, "szegedy_test_err"] == 0.20 and pd.isna(table.loc[0, "szegedy_test_err"])

    rows = attack_sources(sources[:2], data, root=tmp_path, limit=20, steps=5, progress=False)
    assert list(rows["source"]) == names[:2] and (rows["n"] == 20).all()
    assert rows["success_rate"].between(0, 1).all() and (rows["steps"] == 5).all()


def test_train_sources_rejects_empty_selection(tmp_path):
    with pytest.raises(ValueError, match="archs"):
        train_sources(toy_mnist(), archs=[], root=tmp_path)


CLI = ["--limit", "300", "--archs", "FC-10", "--lams", "0", "1", "--max-epochs", "1"]


def test_cli_train_sources_and_attack(tmp_path, capsys):
    root = ["--root", str(tmp_path), "--no-progress"]
    assert main(["train-sources", *CLI, *root]) == 0
    out = capsys.readouterr().out
    assert out.count("| FC-10_lam") == 2 and "szegedy_test_err" in out
    args = ["attack", *CLI, *root, "--steps", "5", "--examples", "30", "--protocol", "paper"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("| FC-10_lam") == 2 and "distortion_01" in out and "n_success" in out
    (meta,) = (tmp_path / "attack-paper").glob("FC-10_lam1_seed0_*/meta.json")
    stamp = meta.stat().st_mtime_ns
    assert main(args) == 0 and meta.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert f"reused {meta.parent} (saved " in capsys.readouterr().out


def test_cli_attack_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--protocol", "fgsm", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--protocol" in err and err.count("\n") == 1
    code = main(["attack", "--split", "dev", "--limit", "10", "--root", str(tmp_path)])
    assert code == 1 and "split must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--steps", "0", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--steps: must be a positive integer" in err


def test_cli_help_lists_the_new_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "train-sources" in out and "attack" in out
