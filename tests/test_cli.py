import subprocess
import sys

from pyro_bnn.cli import main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "pyro_bnn.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0 and "train-baseline" in out.stdout


def test_bad_arguments_give_one_line():
    out = run_cli("train-baseline", "--lam", "abc")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "--lam" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_value_is_one_line_error(tmp_path, capsys):
    code = main(["train-baseline", "--arch", "FC100", "--root", str(tmp_path), "--limit", "50"])
    err = capsys.readouterr().err
    assert code == 1 and "arch must look like" in err and err.count("\n") == 1


def test_train_baseline_smoke(tmp_path):
    args = [
        "train-baseline",
        "--limit",
        "500",
        "--max-epochs",
        "2",
        "--lam",
        "0",
        "1",
        "--root",
        str(tmp_path),
        "--no-progress",
    ]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("| FC-100-100-10")]
    assert len(lines) == 2
    meta = tmp_path / "baseline" / "FC-100-100-10_lam1_seed0" / "meta.json"
    assert meta.is_file()
    stamp = meta.stat().st_mtime_ns
    again = run_cli(*args)
    assert again.returncode == 0 and meta.stat().st_mtime_ns == stamp  # reused, not retrained


def test_train_bnn_smoke(tmp_path):
    args = [
        "train-bnn",
        "--limit",
        "300",
        "--max-epochs",
        "1",
        "--rho-init",
        "-3",
        "-2",
        "--runs",
        "3",
        "--root",
        str(tmp_path),
        "--no-progress",
    ]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| FC-100-100-10")]
    assert len(rows) == 2
    assert (tmp_path / "bnn" / "FC-100-100-10_rho-2_seed0" / "meta.json").is_file()
    bad = run_cli("train-bnn", "--guide", "laplace", "--limit", "50", "--root", str(tmp_path))
    assert bad.returncode == 1 and "known guides" in bad.stderr and "Traceback" not in bad.stderr
