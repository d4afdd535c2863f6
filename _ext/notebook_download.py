"""Offer every chapter as an ``.ipynb`` download from the page's download button.

sphinx-book-theme lists a page's ``.ipynb`` in its download menu when the page context names one
(``ipynb_source``), but only fills that name in when a launch service (Binder, JupyterHub, Colab...) is
configured. This book has none (it builds and reads offline), so this extension does the same as the theme's
launch code without the launch button: it copies the notebook that MyST-NB executed for the page
(``_build/jupyter_execute/<page>.ipynb``, outputs included) next to the page's source in ``_sources`` and
names it in the context before the theme builds its header buttons (priority 501).
"""
from __future__ import annotations

import shutil
from pathlib import Path


def add_notebook_download(app, pagename, templatename, context, doctree):
    if doctree is None or not context.get("sourcename", "").endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.exists():  # a Markdown page without code cells: nothing was executed
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app):
    app.connect("html-page-context", add_notebook_download, priority=500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
