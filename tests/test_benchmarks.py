"""The speed benchmarks run through their command lines (tiny sizes; timings not checked)."""

from tests.conftest import run


def bench(script: str, *args: str) -> str:
    """Run benchmarks/<script> with args; its stdout, after checking it exited cleanly."""
    out = run(f"benchmarks/{script}", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_svi_speed_benchmark_runs_and_reports_both_ratios():
    stdout = bench("svi_speed.py", "--steps", "3", "--repeats", "2", "--samples", "2")
    assert "SVI step (pyro)" in stdout and "SVI step (stack K=7 compiled)" in stdout
    assert "2-sample predictive" in stdout and "draw of 10 weight vectors" in stdout


def test_plain_stack_benchmark_runs_and_reports_a_ratio():
    stdout = bench("plain_stack.py", "--k", "2", "--steps", "2", "--repeats", "2")
    ratio = float(stdout.split("takes ")[1].split("x")[0])
    assert ratio > 0 and "2 separate steps" in stdout


def test_hmc_mass_benchmark_runs_and_reports_both_mass_matrices():
    stdout = bench("hmc_mass.py", "--n", "100", "--warmup", "4", "--samples", "4",
                   "--repeats", "1", "--max-tree-depth", "3")  # fmt: skip
    assert "diagonal mass" in stdout and "Laplace mass" in stdout
    gradients = [
        float(part.split(" gradients")[0].split()[-1]) for part in stdout.split("mass ")[1:]
    ]
    assert len(gradients) == 2 and all(0 < g <= 2**3 for g in gradients)  # tree depth 3
