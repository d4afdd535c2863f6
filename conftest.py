"""Make pytest execute the book's chapters with nbval.

nbval collects only ``.ipynb`` files, and the chapters are MyST-Markdown notebooks (jupytext). This hook
reads each ``chapters/*.md`` with ``jupytext.read(path, fmt="md:myst")`` (without ``fmt`` jupytext would
read a plain Markdown file with no code cells and nothing would run) and hands the notebook to nbval's
own collector, so each code cell becomes a test item executed in a fresh kernel of this environment
(``--nbval-current-env``), in lax mode (the chapters store no outputs to compare against).
"""
from __future__ import annotations

from unittest import mock

import jupytext
import nbval.plugin


class MystNotebookFile(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, fed a notebook read from a jupytext MyST file."""

    def collect(self):
        notebook = jupytext.read(self.path, fmt="md:myst")
        with mock.patch.object(nbval.plugin.nbformat, "read", return_value=notebook):
            yield from super().collect()


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".md" and file_path.parent.name == "chapters":
        if any(cell.cell_type == "code" for cell in jupytext.read(file_path, fmt="md:myst").cells):
            return MystNotebookFile.from_parent(parent, path=file_path)
    return None
