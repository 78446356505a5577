"""Two directives that build the study page's tables at build time, so that the docs never
copy a number by hand.

``study-runs``: the study's committed runs, one row per ``runs/results*/run.json`` that
``runs/reproduce.py`` wrote (``runs.study.report.wall_times``, the table README.md shows
too).

``study-profiles``: the settings of each profile, from ``runs.study.profiles.PROFILES``.

``script-docstring``: the docstring of a script (a path from the repository root), as a
literal block, for scripts that are not importable modules (``benchmarks/``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]


def _cell(value) -> str:
    """A profile setting as table text."""
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def profile_rows() -> tuple[list[str], list[list[str]]]:
    """(profile names, one list of cells per setting) from runs.study.profiles.PROFILES."""
    from runs.study.profiles import PROFILES

    names = list(PROFILES)
    settings = {name: vars(PROFILES[name]) for name in names}  # every field, None too
    keys = [key for key in settings[names[0]] if key != "name"]
    return names, [[f"``{key}``", *(_cell(settings[n][key]) for n in names)] for key in keys]


class _Table(SphinxDirective):
    has_content = False

    def table(self, header: list[str], body: list[list[str]], widths: str) -> list[nodes.Node]:
        """A list-table of ``header`` and ``body`` cells, parsed as reST here."""
        lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
        for cells in [header, *body]:
            lines.append(f"   * - {cells[0]}")
            lines.extend(f"     - {cell}" for cell in cells[1:])
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.name), 0, container)
        return container.children


class StudyRuns(_Table):
    """``.. study-runs::``: runs.study.report.wall_times, the table README.md also shows."""

    def run(self) -> list[nodes.Node]:
        from runs.study.report import wall_times

        for path in sorted(ROOT.glob("runs/results*/run.json")):
            self.env.note_dependency(str(path))
        frame = wall_times(ROOT)
        frame["results"] = "``" + frame["results"] + "``"
        frame["command"] = "``" + frame["command"] + "``"
        frame["this command (h)"] = frame["this command (h)"].map("{:.2f}".format)
        body = frame.astype(str).values.tolist()
        return self.table(list(frame.columns), body, "14 30 16 12 8 20")


class StudyProfiles(_Table):
    """``.. study-profiles::``: the table of :func:`profile_rows`."""

    def run(self) -> list[nodes.Node]:
        names, body = profile_rows()
        header = ["setting", *(f"``{name}``" for name in names)]
        return self.table(header, body, " ".join(["22"] + ["12"] * len(names)))


class ScriptDocstring(SphinxDirective):
    """``.. script-docstring:: benchmarks/svi_speed.py``: that file's docstring, verbatim."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = ROOT / self.arguments[0]
        self.env.note_dependency(str(path))
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc:
            raise self.error(f"{self.arguments[0]} has no docstring")
        return [nodes.literal_block(doc, doc)]


def setup(app):
    app.add_directive("study-runs", StudyRuns)
    app.add_directive("study-profiles", StudyProfiles)
    app.add_directive("script-docstring", ScriptDocstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
