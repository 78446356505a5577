"""Every script in examples/ through its real command line with --quick, each table it prints
checked. The scripts are found by a glob, and a script without a check here fails, so a new
example cannot be left untested."""

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, run

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SOFTPLUS_MINUS_3 = math.log1p(math.exp(-3.0))


def run_example(name: str, *args: str) -> str:
    """``python examples/<name> --quick <args>`` from the repository root: its stdout."""
    proc = run(f"examples/{name}", "--quick", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def tables(out: str) -> list[pd.DataFrame]:
    """The Markdown tables in ``out`` (pandas' to_markdown), numbers as numbers."""
    found, block = [], []
    for line in [*out.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif block:
            header, rows = block[0], block[2:]  # block[1] is the |:---|---:| line
            frame = pd.DataFrame(rows, columns=header)
            for column in frame:
                try:
                    frame[column] = pd.to_numeric(frame[column])
                except ValueError:
                    pass  # a text column
            found.append(frame)
            block = []
    return found


def table(out: str) -> pd.DataFrame:
    """The last table the script printed."""
    found = tables(out)
    assert found, f"no table in the output:\n{out}"
    return found[-1]


def check_classification(tmp_path: Path) -> None:
    df = table(run_example("classification.py")).set_index("rule")
    assert list(df.index) == ["one weight sample", "mean of 10 samples", "posterior mean"]
    assert df["n_test"].eq(1000).all()
    assert (df["acc"] > 0.5).all()  # chance is 0.1
    assert (df["nll"] > 0).all() and df["nll"].map(math.isfinite).all()
    assert df["ece"].between(0, 1).all() and df["acc_sd"].ge(0).all()
    assert df.loc["posterior mean", "acc_sd"] == 0  # a deterministic net
    # by Jensen, averaging the samples' probabilities cannot raise the expected NLL
    assert df.loc["mean of 10 samples", "nll"] <= df.loc["one weight sample", "nll"] + 0.01


def check_cnn_mnist(tmp_path: Path) -> None:
    args = ("--root", str(tmp_path / "art"), "--results", str(tmp_path / "res"), "--no-progress")
    out = run_example("cnn_mnist.py", *args)
    df = pd.read_csv(tmp_path / "res" / "cnn_mnist.csv")
    assert list(df["rule"]) == ["one weight sample", "mean of 10 samples"]
    assert df["epochs"].eq(3).all() and df["n_test"].eq(500).all()
    assert (df["test_acc"] > 0.3).all() and df["acc_sd"].ge(0).all()  # chance is 0.1
    assert (df["test_nll"] > 0).all() and df["test_nll"].map(math.isfinite).all()
    assert table(out)["rule"].tolist() == df["rule"].tolist()
    assert (tmp_path / "res" / "cnn_mnist.md").is_file()
    (artifact,) = (tmp_path / "art").iterdir()
    assert {"tensors.pt", "meta.json"} <= {p.name for p in artifact.iterdir()}
    # a rerun with the same settings reuses the fitted guide, says so, and scores the same
    again = run_example("cnn_mnist.py", *args)
    assert f"reused {artifact}" in again
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "res" / "cnn_mnist.csv").drop(columns="eval_s"),
        df.drop(columns="eval_s"),
    )


def check_regression(tmp_path: Path) -> None:
    out = run_example("regression.py", "--results", str(tmp_path))
    df = pd.read_csv(tmp_path / "regression.csv")
    noise = ["fixed", "learned", "heteroskedastic"]
    assert list(zip(df["data"], df["noise"])) == [
        (d, n) for d in ("toy", "diabetes") for n in noise
    ]
    assert df["n_test"].tolist() == [1000] * 3 + [89] * 3  # one diabetes fold in quick mode
    # calibrated: each 95% interval of y holds most of the held-out targets
    assert df["coverage_95"].between(0.8, 1).all(), df
    assert (df["width_95"] > 0).all() and (df["rmse"] < 2).all()  # standardised units
    assert df["nll"].map(math.isfinite).all() and (df["noise_sd"] > 0).all()
    assert table(out)[["data", "noise"]].equals(df[["data", "noise"]])
    png = tmp_path / "regression_toy.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def check_uncertainty_ood(tmp_path: Path) -> None:
    df = table(run_example("uncertainty_ood.py"))
    bnn, mean = df[df["rule"] == "BNN, S samples"], df[df["rule"] == "posterior mean"]
    assert set(bnn["measure"]) == {"entropy", "expected_entropy", "mutual_information", "max_prob"}
    assert set(mean["measure"]) == {"entropy", "max_prob"}
    aurocs = ["auroc rotated 90", "auroc uniform noise"]
    assert df[aurocs].stack().between(0, 1).all()
    # the samples disagree more off the data: mutual information flags both sets
    mi = bnn.set_index("measure").loc["mutual_information"]
    assert mi["auroc rotated 90"] > 0.6 and mi["auroc uniform noise"] > 0.6


def check_attack_bnn(tmp_path: Path) -> None:
    out = run_example("attack_bnn.py")
    df = table(out).set_index("attack")
    assert "100 MNIST test images" in out
    clean = df.loc["clean", "robust_acc"]
    assert clean > 0.5 and df.loc["clean", "mean_l2"] == 0
    assert (df["mean_l2"] <= 1.0 + 1e-3).all()  # every attack within the L2 budget
    assert (df["robust_acc"] <= clean + 0.05).all()
    white_box = df[df["white_box"].astype(str) == "True"]
    assert list(white_box.index) == [
        "PGD + EOT on the rule",
        "APGD-CE + EOT on the rule",
        "worst case of the white-box attacks",
    ]
    # attacking one weight sample overstates the rule's robustness
    assert white_box["robust_acc"].min() < df.loc["PGD on one weight sample", "robust_acc"]
    assert white_box["robust_acc"].min() < clean - 0.1


def check_stack_bnns(tmp_path: Path) -> None:
    out = run_example("stack_bnns.py")
    df = table(out)
    assert list(df["model"]) == ["ELBO"] * 4 + ["sigma held", "noise only"]
    assert list(df["rho_init"]) == [-30, -5, -3, -2, -3, -3]
    assert df["sigma_mean"].iloc[0] < 1e-6  # rho_init -30 stays deterministic
    held = df[df["train_sigma"].astype(str) == "False"]["sigma_mean"]
    assert ((held - SOFTPLUS_MINUS_3).abs() < 1e-4).all()  # held at softplus(-3)
    assert (df["acc_10_samples"] > 0.5).all() and df["kept_epoch"].between(1, 6).all()
    assert "stack of 6 BNNs:" in out and "one of them alone by Pyro's Trace_ELBO" in out


def check_ray_sweep(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = run_example("ray_sweep.py")
    df = table(out)
    assert sorted(zip(df["prior"], df["rho_init"])) == sorted(
        (prior, rho) for prior in ("normal 0.1", "scale-mixture") for rho in (-5, -3)
    )
    assert (df["test_acc"] > 0.3).all() and df["test_nll"].map(math.isfinite).all()
    assert "4 jobs on the ray executor with 2 workers" in out


def check_gpu(tmp_path: Path) -> None:
    out = run_example("gpu.py")  # --device auto: cuda where torch sees a GPU
    device = "cuda" if torch.cuda.is_available() else "cpu"
    df = table(out)
    assert df["device"].str.startswith(device).all() and (df["wall_s"] >= 0).all()
    assert len(df) == 4 and f"device: {device}" in out
    results = dict(zip(df["stage"], df["result"]))
    test_acc = float(results["predictive, 100 samples, 1000 images"].split()[-1])
    assert test_acc > 0.5


CHECKS = {
    "attack_bnn.py": check_attack_bnn,
    "classification.py": check_classification,
    "cnn_mnist.py": check_cnn_mnist,
    "gpu.py": check_gpu,
    "ray_sweep.py": check_ray_sweep,
    "regression.py": check_regression,
    "stack_bnns.py": check_stack_bnns,
    "uncertainty_ood.py": check_uncertainty_ood,
}


def test_the_glob_finds_the_examples():
    assert {"classification.py", "cnn_mnist.py", "attack_bnn.py"} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_quick(script, tmp_path):
    assert script.name in CHECKS, f"examples/{script.name} has no check in {__file__}"
    CHECKS[script.name](tmp_path)
