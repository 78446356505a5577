"""The Sphinx docs build with warnings as errors, show every example script, document every
module of pyro_bnn, and their front-page example runs as written."""

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyro_bnn
from tests.conftest import SUBPROCESS_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.rst"))


def directives(name: str) -> list[tuple[Path, str]]:
    """(page, argument) of every ``.. <name>:: argument`` in the docs."""
    pattern = re.compile(rf"^\s*\.\. {re.escape(name)}::\s*(\S+)", flags=re.M)
    return [(page, arg) for page in PAGES for arg in pattern.findall(page.read_text())]


def test_docs_build_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx")
    # -E: read every page afresh; -d: doctrees in tmp_path, not in the source tree
    command = [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-j", "1", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), "docs", str(tmp_path / "html")]
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    html = tmp_path / "html"
    for page in ("index", "getting_started", "study", "api/index", "tutorials/index"):
        assert (html / f"{page}.html").stat().st_size > 1000, page
    # the study page's tables are read from run.json and runs.study.profiles at build time
    study = (html / "study.html").read_text()
    assert "runs/results/" in study and "cuda_paper_steps" in study


def test_every_example_is_shown_by_a_page():
    included = {(page.parent / arg).resolve() for page, arg in directives("literalinclude")}
    scripts = sorted((ROOT / "examples").glob("*.py"))
    assert scripts
    missing = [p.name for p in scripts if p.resolve() not in included]
    assert not missing, f"no docs page literalincludes examples/{missing}"


def test_every_module_is_in_the_api_reference():
    documented = {arg for _, arg in directives("automodule")}
    modules = {"pyro_bnn"} | {
        info.name for info in pkgutil.walk_packages(pyro_bnn.__path__, "pyro_bnn.")
    }
    assert modules - documented == set(), "modules missing from docs/api/*.rst"
    for name in documented:  # and every documented module exists
        importlib.import_module(name)


def test_front_page_example_runs_as_written():
    text = (DOCS / "index.rst").read_text()
    section = text.split("Fifteen lines\n-------------\n")[1]
    block = section.split(".. code-block:: python\n\n")[1].split("\n\n:doc:")[0]
    code = "\n".join(line.removeprefix("    ") for line in block.splitlines())
    assert "fit_svi(" in code and len([line for line in code.splitlines() if line]) <= 15
    exec(compile(code, "docs/index.rst", "exec"), {})
