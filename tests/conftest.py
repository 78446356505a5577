"""Shared fixtures: MNIST loaded once per session, small real slices, a clean Pyro state."""

import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyro_bnn.data import MNIST, Split, load_mnist

# A subprocess test fails only on a hang: a busy machine may run it many times slower
SUBPROCESS_TIMEOUT = 1800

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: one core per worker, for its
    os.environ["OMP_NUM_THREADS"] = "1"  # subprocesses too, so workers do not oversubscribe
    torch.set_num_threads(1)


ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=SUBPROCESS_TIMEOUT):
    """``python <args>`` in the repository root: the CompletedProcess, output captured."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def run_script(script: str, *args: str) -> str:
    """``python runs/<script> --quick <args>``: its stdout, after checking it succeeded."""
    proc = run(f"runs/{script}", "--quick", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def mnist() -> MNIST:
    return load_mnist()


@pytest.fixture(scope="session")
def small(mnist) -> MNIST:
    """2,000 train and 500 val/test images: enough for a net to learn something."""
    return mnist.head(2000, 500)


@pytest.fixture(autouse=True)
def clean_state():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def toy_mnist(n_train=256, n_eval=128, dim=784, classes=10, seed=0) -> MNIST:
    """A synthetic, linearly separable stand-in with MNIST's shapes."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g)

    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        return Split((centers[y] + 0.5 * torch.randn(n, dim, generator=g)).abs(), y)

    return MNIST(split(n_train), split(n_eval), split(n_eval), source="toy")
