"""The book's `_ext/parallel_execution.py`: a small Sphinx + MyST-NB project of three notebooks, built twice.

Checks what the extension promises: uncached notebooks are executed side by side before Sphinx reads them, with
one thread each, and stored so that MyST-NB uses the cache and executes nothing itself; a notebook that fails
there is executed again by MyST-NB, which reports the error; a second build finds everything cached.
"""
from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

REPO = Path(__file__).resolve().parents[1]

NOTEBOOK = """\
---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# {title}

```{{code-cell}} ipython3
import os, time
time.sleep(1)
print("threads", os.environ.get("OMP_NUM_THREADS"), "{title}")
{extra}
```
"""


def build(src: Path, jobs: int, env: dict) -> tuple[int, str]:
    from sphinx.application import Sphinx

    old = {k: os.environ.get(k) for k in (*env, "OMP_NUM_THREADS", "AE_COURSE_BOOK_JOBS")}
    os.environ.pop("OMP_NUM_THREADS", None)
    os.environ.pop("AE_COURSE_BOOK_JOBS", None)
    os.environ.update(env)
    status = io.StringIO()
    try:
        app = Sphinx(str(src), str(src), str(src / "_build" / "html"), str(src / "_build" / ".doctrees"), "html",
                     confoverrides={"ae_course_execution_jobs": jobs}, status=status, warning=status,
                     freshenv=True)
        app.build()
        return app.statuscode, status.getvalue()
    except Exception as err:  # nb_execution_raise_on_error: a failing notebook stops the build
        return 1, status.getvalue() + f"\n{type(err).__name__}: {err}"
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "book"
    src.mkdir()
    (src / "conf.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(REPO / "_ext")!r})
        extensions = ["myst_nb", "parallel_execution"]
        nb_execution_mode = "cache"
        nb_execution_cache_path = {str(tmp_path / "cache")!r}
        nb_execution_raise_on_error = True
        exclude_patterns = ["_build"]
        """))
    (src / "index.md").write_text("# Index\n\n```{toctree}\na\nb\n```\n")
    for name in ("a", "b"):
        (src / f"{name}.md").write_text(NOTEBOOK.format(title=name, extra=""))
    return src


def test_notebooks_run_side_by_side_one_thread_each_and_myst_nb_uses_the_cache(project):
    code, log = build(project, jobs=2, env={})
    assert code == 0, log
    assert "executing 2 notebooks, 2 at a time, 1 thread(s) each" in log
    assert log.count("executed and cached") == 2
    assert log.count("Using cached notebook") == 2 and "Executing notebook" not in log
    for name in ("a", "b"):
        assert f"threads 1 {name}" in (project / "_build" / "html" / f"{name}.html").read_text()
    code, log = build(project, jobs=2, env={})           # a second build: everything cached, nothing run
    assert code == 0 and "[parallel_execution]" not in log and log.count("Using cached notebook") == 2


def test_one_job_leaves_execution_to_myst_nb(project):
    code, log = build(project, jobs=1, env={})
    assert code == 0, log
    assert "[parallel_execution]" not in log and log.count("Executing notebook") == 2


def test_the_environment_overrides_the_setting(project):
    code, log = build(project, jobs=2, env={"AE_COURSE_BOOK_JOBS": "1"})
    assert code == 0, log
    assert "[parallel_execution]" not in log and log.count("Executing notebook") == 2


def test_a_failing_notebook_is_executed_again_by_myst_nb_which_fails_the_build(project):
    (project / "b.md").write_text(NOTEBOOK.format(title="b", extra='assert False, "b fails"'))
    code, log = build(project, jobs=2, env={})
    assert "b.md failed after" in log and "MyST-NB will execute it again" in log
    assert code != 0 and "Executing notebook" in log      # MyST-NB's own run of b, which raises
