"""The README's commands are the ones CI runs, and its API tour runs as written."""

import ast
import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = readme_commands()
    test_cmd = next(c for c in commands if "pytest" in c)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd.strip() in ci_lines


def test_api_tour_runs_as_written_and_learns():
    """Each python block runs; the first one's printed scores show a net that learned."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", text, flags=re.S)
    assert blocks
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
        if block is blocks[0]:  # 10 classes: chance is 10%; 3 epochs of it gave 37%
            scores = ast.literal_eval(out.getvalue().strip().splitlines()[-1])
            assert scores["acc"] > 0.6, scores


def test_every_relative_link_of_the_readme_and_the_reports_exists():
    """A renamed result file breaks its link here, not in a reader's browser."""
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "runs").glob("REPORT*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.name}: {target}")
    assert not missing, missing
