"""The pyro-bnn command (runs.cli), through its real command line where it matters."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runs.cli import main
from tests.conftest import SUBPROCESS_TIMEOUT, run


def run_cli(*args):
    return run("-m", "runs.cli", *args)


def table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("| FC-")]


def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0 and "train-baseline" in out.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("pyro-bnn")
    out = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert out.returncode == 0 and "train-sources" in out.stdout


def test_bad_arguments_give_one_line():
    out = run_cli("train-baseline", "--lam", "abc")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--lam" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("limit", ["0", "-5", "ten"])
def test_limit_must_be_positive(limit, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-baseline", "--limit", limit, "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--limit: must be a positive integer" in err and not any(tmp_path.iterdir())


def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-bnn", "--device", "cuda", "--limit", "50", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "--device" in err and "CUDA is not available" in err and "--device cpu" in err
    with pytest.raises(SystemExit):
        main(["train-bnn", "--device", "tpu", "--root", str(tmp_path)])
    assert "--device: unknown device 'tpu'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_through_the_command_line(tmp_path):
    out = run_cli("train-baseline", "--device", "cuda", "--limit", "50", "--root", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "--device" in out.stderr


def test_bad_value_is_one_line_error(tmp_path, capsys):
    code = main(["train-baseline", "--arch", "FC100", "--root", str(tmp_path), "--limit", "50"])
    err = capsys.readouterr().err
    assert code == 1 and "arch must look like" in err and err.count("\n") == 1


def test_train_baseline_reruns_and_changed_settings(tmp_path):
    args = ["train-baseline", "--limit", "500", "--lam", "0", "1", "--root", str(tmp_path),
            "--no-progress"]  # fmt: skip
    out = run_cli(*args, "--max-epochs", "2")
    assert out.returncode == 0, out.stderr
    assert len(table_rows(out.stdout)) == 2
    (meta,) = (tmp_path / "baseline").glob("FC-100-100-10_lam1_seed0_*/meta.json")
    assert f"saved {meta.parent} (" in out.stdout
    stamp = meta.stat().st_mtime_ns
    again = run_cli(*args, "--max-epochs", "2")
    assert again.returncode == 0 and meta.stat().st_mtime_ns == stamp  # reused, not retrained
    assert f"reused {meta.parent} (saved " in again.stdout
    assert table_rows(again.stdout) == table_rows(out.stdout)
    longer = run_cli(*args, "--max-epochs", "3")  # a changed setting trains beside it
    assert longer.returncode == 0 and meta.stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "baseline").glob("FC-100-100-10_lam1_seed0_*"))) == 2


def test_train_bnn_rerun_says_reused_and_prints_the_same(tmp_path):
    args = ["train-bnn", "--limit", "300", "--max-epochs", "1", "--rho-init", "-3", "-2",
            "--runs", "3", "--root", str(tmp_path), "--no-progress"]  # fmt: skip
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    rows = table_rows(out.stdout)
    assert len(rows) == 2
    assert len(list((tmp_path / "bnn").glob("FC-100-100-10_rho-2_seed0_*/meta.json"))) == 1
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("reused ") == 2 and table_rows(again.stdout) == rows
    bad = run_cli("train-bnn", "--guide", "laplace", "--limit", "50", "--root", str(tmp_path))
    assert bad.returncode == 1 and "known guides" in bad.stderr and "Traceback" not in bad.stderr
