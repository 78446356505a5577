"""The library at an older git commit, for before/after timings in one process."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def library_at(ref: str):
    """The pyro_bnn package as it was at git commit ``ref``, imported as pyro_bnn_<ref>."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "archive", ref, "pyro_bnn"], cwd=root, capture_output=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="pyro_bnn_base_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    name = f"pyro_bnn_{ref.replace('-', '_').replace('~', '_')}"
    (folder / "pyro_bnn").rename(folder / name)
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)
