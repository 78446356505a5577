"""Sphinx configuration of the pyro_bnn documentation.

Build it with ``sphinx-build -W -b html docs docs/_build`` (warnings are errors); it needs
no network. The API pages are autodoc over the package's docstrings, which use reST
``:param x:`` field lists (so no napoleon); the tutorials include the scripts in
``examples/`` verbatim.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # pyro_bnn and runs, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import pyro_bnn  # noqa: E402

project = "pyro_bnn"
author = "the pyro_bnn authors"
copyright = "2026, the pyro_bnn authors"
version = release = pyro_bnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "study_runs",  # docs/_ext/study_runs.py: the study's wall-time table from run.json
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
root_doc = "index"

# autodoc: members in each module's __all__, in source order, signatures with their hints
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False

html_theme = "alabaster"
html_title = f"pyro_bnn {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Bayesian neural networks in Pyro",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
