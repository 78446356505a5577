"""The speed benchmarks run through their command lines (tiny sizes; timings not checked)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str) -> str:
    """Run benchmarks/<script> with args; its stdout, after checking it exited cleanly."""
    out = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_svi_speed_benchmark_runs_and_reports_both_ratios():
    stdout = bench("svi_speed.py", "--steps", "3", "--repeats", "2", "--samples", "2")
    assert "SVI step" in stdout and "ratio" in stdout
    assert "2-sample predictive" in stdout


def test_fused_kl_benchmark_runs():
    stdout = bench(
        "fused_kl.py", "--no-compile", "--steps", "2", "--repeats", "1", "--ks", "1", "2"
    )
    assert "eager K=2" in stdout and "x per model" in stdout
