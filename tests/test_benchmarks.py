"""The speed benchmarks run through their command lines (tiny sizes; timings not checked)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_svi_speed_benchmark_runs_and_reports_both_ratios():
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/svi_speed.py",
            "--steps",
            "3",
            "--repeats",
            "2",
            "--samples",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "SVI step" in out.stdout and "ratio" in out.stdout
    assert "2-sample predictive" in out.stdout


def test_fused_kl_benchmark_runs():
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/fused_kl.py",
            "--no-compile",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--ks",
            "1",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "eager K=2" in out.stdout and "x per model" in out.stdout
