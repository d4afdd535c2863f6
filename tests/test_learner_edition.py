"""The learner's edition (`python -m ae_course.learner_edition`, `make learner`): solutions can neither run nor
overwrite the learner's attempt, the attempt cells keep calling their checkers, and every learner notebook runs
top to bottom with each checker's feedback about the learner's first attempt.

The execution test runs the notebooks on the embedded 5,000 digits (AE_COURSE_DATA unset, offline), so that a
CI run which builds the book on the full data sets also executes every chapter on the default data source.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from ae_course.learner_edition import ATTEMPT_TAG, learner_notebook, main, write_learner_edition

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
# Executed longest first (the file's length as a proxy), so that pytest-xdist's workers do not end on one long chapter.
LONGEST_FIRST = sorted(CHAPTERS, key=lambda path: -path.stat().st_size)
HEADER = "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"


def _chapter(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "chapters" / "99_toy.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + body)
    if not (tmp_path / "ae_course").exists():
        (tmp_path / "ae_course").symlink_to(ROOT / "ae_course")   # what the listings include
    return path


TOY = """# A toy chapter

```{code-cell} ipython3
value = 1
```

```{literalinclude} ../ae_course/losses.py
:pyobject: standard_normal
:caption: the prior
```

````{exercise} Double it
:label: ex-toy
:class: skill

Write `double(x)`.
````

```{code-cell} ipython3
def double(x):
    return None

check_double(double)
```

````{solution-start} ex-toy
:class: dropdown
````

Multiply by two.

```{code-cell} ipython3
def double(x):
    return 2 * x

assert check_double(double)
```

````{solution-end}
````

```{admonition} Summary
:class: summary

- doubling
```
"""


def test_solutions_become_text_and_attempts_stay_code(tmp_path):
    notebook = learner_notebook(_chapter(tmp_path, TOY))
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert code == ["value = 1", "def double(x):\n    return None\n\ncheck_double(double)"]
    attempt = [cell for cell in notebook.cells if cell.cell_type == "code"][1]
    assert attempt.metadata["tags"] == [ATTEMPT_TAG]
    # the solution is kept, as text inside a closed <details>, in the order of the chapter
    solution = next(cell.source for cell in notebook.cells if "<details>" in cell.source)
    assert solution.index("Multiply by two.") < solution.index("```python\ndef double(x):\n    return 2 * x")
    assert solution.rstrip().endswith("</details>")
    # book-only directives become Markdown that Jupyter renders
    assert "**Exercise (write the real thing): Double it**" in markdown
    assert "def standard_normal(" in markdown and "{literalinclude}" not in markdown
    assert "> **Summary**" in markdown and "{admonition}" not in markdown
    assert "solution-start" not in markdown and "solution-end" not in markdown


@pytest.mark.parametrize("broken, message", [
    (TOY.replace("````{solution-end}\n````\n", ""), "never ends"),
    (TOY.replace("````{solution-start} ex-toy\n:class: dropdown\n````\n", ""), "never started"),
    (TOY.replace("````{exercise} Double it", "````{exercise} Double it\n").replace("\n````\n\n```{code-cell}", "\n", 1),
     "unclosed directive"),
])
def test_malformed_solution_blocks_are_refused(tmp_path, broken, message):
    with pytest.raises(ValueError, match=message):
        learner_notebook(_chapter(tmp_path, broken))


def test_command_writes_one_notebook_per_chapter(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    written = sorted(tmp_path.glob("*.ipynb"))
    assert [p.stem for p in written] == [p.stem for p in CHAPTERS]
    assert capsys.readouterr().out.split() == [str(p) for p in written]
    for path in written:
        nbformat.validate(nbformat.read(path, as_version=4))
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_solution_is_removed_from_the_code(chapter):
    text = chapter.read_text()
    notebook = learner_notebook(chapter)
    solutions = len(re.findall(r"\{solution-start\}", text))
    assert solutions >= 1
    assert sum("<details><summary>Solution" in cell.source for cell in notebook.cells) == solutions
    attempts = [cell for cell in notebook.cells if ATTEMPT_TAG in cell.metadata.get("tags", [])]
    # an exercise with a code cell between its statement and its solution gives the learner an attempt cell
    # (a few exercises are questions to think about, answered by the solution's text and code)
    with_code = sum("{code-cell}" in chunk.split("{solution-start}")[0] for chunk in text.split("{exercise}")[1:])
    assert len(attempts) >= with_code >= 1
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert "assert feedback" not in cell.source, "a solution cell survived as code"


@pytest.fixture(scope="module")
def learner_dir(tmp_path_factory):
    return write_learner_edition(out=tmp_path_factory.mktemp("learner"))[0].parent


@pytest.fixture(scope="module")
def package_cache(tmp_path_factory):
    """$AE_COURSE_CACHE for the learner's notebooks: the judge trained on the embedded digits by the first chapter
    that needs it is loaded by the later ones (as on a learner's machine), not the user's own cache."""
    return tmp_path_factory.mktemp("ae_course_cache")


@pytest.mark.parametrize("chapter", LONGEST_FIRST, ids=lambda p: p.stem)
def test_learner_notebook_runs_and_feedback_is_about_the_attempt(chapter, learner_dir, package_cache, tmp_path,
                                                                  monkeypatch):
    from nbclient import NotebookClient

    # the kernel inherits this environment: the embedded digits, no download, quiet progress bars
    monkeypatch.delenv("AE_COURSE_DATA", raising=False)
    monkeypatch.setenv("AE_COURSE_OFFLINE", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    import matplotlib

    monkeypatch.setenv("MPLCONFIGDIR", matplotlib.get_cachedir())    # keep matplotlib's font cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # no per-user copy of full MNIST either
    monkeypatch.setenv("AE_COURSE_CACHE", str(package_cache))
    notebook = nbformat.read(learner_dir / f"{chapter.stem}.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    print(f"{chapter.stem}: executed in {time.perf_counter() - start:.0f} s")

    def text(cell):
        return "\n".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                         for output in cell.get("outputs", []))

    attempts = [cell for cell in notebook.cells if ATTEMPT_TAG in cell.metadata.get("tags", [])]
    assert attempts
    for cell in attempts:
        assert "Not yet:" in text(cell), f"the first attempt is judged: {cell.source[:200]!r} -> {text(cell)!r}"
    passed = [cell.source[:120] for cell in notebook.cells if cell.cell_type == "code" and "Correct:" in text(cell)]
    assert not passed, f"feedback of a solution, not of the learner's attempt: {passed}"
