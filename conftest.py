"""Make pytest execute the book's chapters with nbval.

nbval collects only ``.ipynb`` files, and the chapters are MyST-Markdown notebooks (jupytext). This hook
reads each ``chapters/*.md`` with ``jupytext.read(path, fmt="md:myst")`` (without ``fmt`` jupytext would
read a plain Markdown file with no code cells and nothing would run) and hands the notebook to nbval's
own collector, so each code cell becomes a test item executed in a fresh kernel of this environment
(``--nbval-current-env``), in lax mode (the chapters store no outputs to compare against).

CI builds the book first, and the build executes every chapter in the same environment on the same data
and fails on any error or failed assertion (``execute.allow_errors: false``, ``--warningiserror``): there,
``AE_COURSE_BOOK_EXECUTED=1`` says so, and the chapters are not executed a second time here (the header of
the test run says which). Without it, ``make test`` executes every chapter.
"""
from __future__ import annotations

import os
from unittest import mock

import jupytext
import nbval.plugin


class MystNotebookFile(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, fed a notebook read from a jupytext MyST file."""

    def collect(self):
        notebook = jupytext.read(self.path, fmt="md:myst")
        with mock.patch.object(nbval.plugin.nbformat, "read", return_value=notebook):
            yield from super().collect()


def _book_executed() -> bool:
    return os.environ.get("AE_COURSE_BOOK_EXECUTED", "") not in ("", "0")


def pytest_report_header(config):
    if _book_executed():
        return "chapters: executed by the book build just before (AE_COURSE_BOOK_EXECUTED=1), not again by nbval"
    return "chapters: executed by nbval"


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".md" and file_path.parent.name == "chapters" and not _book_executed():
        if any(cell.cell_type == "code" for cell in jupytext.read(file_path, fmt="md:myst").cells):
            return MystNotebookFile.from_parent(parent, path=file_path)
    return None
