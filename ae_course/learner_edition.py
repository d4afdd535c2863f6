"""The learner's edition: every chapter as a Jupyter notebook in which the exercise solutions cannot run.

Opened as a notebook (jupytext), a chapter runs each solution cell right after the learner's attempt, and
"Run all" overwrites the learner's function with the solution. The learner's edition removes that: each
``{solution-start}`` ... ``{solution-end}`` block of a chapter, its code cells included, becomes one Markdown
cell that holds the solution as text in a closed ``<details>`` element (readable when wanted, never executed).
Everything else stays as it is: the attempt cells keep calling their checkers, so the learner reads the
feedback on their own attempt. For reading in Jupyter, the MyST directives that only the book renders become
Markdown: an exercise's fence becomes a bold title, an admonition a quote, and a ``literalinclude`` of the
package the code it includes (read by Sphinx's own reader, so the notebook shows what the book shows).

    python -m ae_course.learner_edition                 # chapters/*.md -> learner/*.ipynb
    python -m ae_course.learner_edition --out DIR CHAPTER.md ...

Solution code in the learner's edition is Markdown, so a solution that a later cell depends on would break
"Run all"; the chapters are written so that none does (``tests/test_learner_edition.py`` executes every
learner notebook top to bottom).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat

__all__ = ["learner_notebook", "write_learner_edition", "main"]

ROOT = Path(__file__).resolve().parents[1]
_OPENING = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[a-z:-]+)\}\s*(?P<argument>.*)$")
_OPTION = re.compile(r"^:(?P<key>[a-z-]+):\s*(?P<value>.*)$")
ATTEMPT_TAG = "attempt"  # metadata tag of the code cells that call a checker on the learner's attempt


def _directive(lines: list[str], start: int) -> tuple[str, str, dict[str, str], list[str], int] | None:
    """Parse the MyST directive opening at ``lines[start]``: (name, argument, options, body, index after it)."""
    match = _OPENING.match(lines[start])
    if not match:
        return None
    fence = match["fence"]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == fence), None)
    if end is None:
        raise ValueError(f"unclosed directive {{{match['name']}}}: no closing {fence!r} after {lines[start]!r}")
    options, body_start = {}, start + 1
    while body_start < end and (option := _OPTION.match(lines[body_start])):
        options[option["key"]] = option["value"]
        body_start += 1
    return match["name"], match["argument"], options, lines[body_start:end], end + 1


def _included_code(argument: str, options: dict[str, str], source_dir: Path) -> str:
    """The text a ``literalinclude`` shows in the book, read by Sphinx's reader with the same options."""
    from sphinx.directives.code import LiteralIncludeReader

    reader = LiteralIncludeReader(str(source_dir / argument), dict(options), SimpleNamespace(source_encoding="utf-8"))
    text, _ = reader.read()
    return text.rstrip("\n")


def _markdown_for_jupyter(text: str, source_dir: Path) -> str:
    """Rewrite the book-only directives of a Markdown text (exercise, admonition, literalinclude) for Jupyter."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        parsed = _directive(lines, i)
        if parsed is None:
            out.append(lines[i])
            i += 1
            continue
        start = i
        name, argument, options, body, i = parsed
        body_text = _markdown_for_jupyter("\n".join(body), source_dir)
        if name == "exercise":
            kind = "Exercise (write the real thing)" if "skill" in options.get("class", "").split() else "Exercise"
            out += [f"**{kind}: {argument}**", "", body_text]
        elif name == "admonition":
            out += [f"> **{argument}**", ">"] + [f"> {line}".rstrip() for line in body_text.split("\n")]
        elif name == "literalinclude":
            caption = options.pop("caption", argument)
            keep = {key: value for key, value in options.items() if key in ("pyobject", "lines", "start-after",
                                                                           "end-before", "dedent")}
            language = options.get("language", "python")
            out += [f"*{caption}*", "", f"```{language}", _included_code(argument, keep, source_dir), "```"]
        else:  # proofs, figures, math: left for the reader (JupyterLab shows them as text)
            out += lines[start:i]
    return "\n".join(out)


def _solution_cell(label: str, parts: list[tuple[str, str]], source_dir: Path) -> nbformat.NotebookNode:
    """One Markdown cell holding a solution block (its text and its code, in order) in a closed <details>."""
    lines = [f"<details><summary>Solution ({label}): open it after your own attempt</summary>", ""]
    for kind, text in parts:
        lines += [_markdown_for_jupyter(text, source_dir), ""] if kind == "markdown" else ["```python", text, "```", ""]
    lines.append("</details>")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


def learner_notebook(chapter: str | Path) -> nbformat.NotebookNode:
    """Read a chapter (MyST Markdown, jupytext) and return its learner's edition as a notebook.

    Raises ValueError for a solution block that never ends or ends without having started.
    """
    chapter = Path(chapter)
    source = jupytext.read(chapter, fmt="md:myst")
    source_dir = chapter.parent
    cells: list[nbformat.NotebookNode] = []
    markdown: list[str] = []      # Markdown text outside solutions, waiting to become one cell
    solution: list[tuple[str, str]] | None = None   # (kind, text) parts of the open solution block
    label = ""

    def flush_markdown():
        text = "\n".join(markdown).strip("\n")
        if text:
            cells.append(nbformat.v4.new_markdown_cell(_markdown_for_jupyter(text, source_dir)))
        markdown.clear()

    for cell in source.cells:
        if cell.cell_type == "code":
            if solution is not None:
                solution.append(("code", cell.source))
                continue
            flush_markdown()
            new = nbformat.v4.new_code_cell(cell.source, metadata=dict(cell.metadata))
            if re.search(r"\bcheck_[a-z0-9_]+\(", cell.source):
                new.metadata["tags"] = list(new.metadata.get("tags", [])) + [ATTEMPT_TAG]
            cells.append(new)
            continue
        lines, i, text = cell.source.split("\n"), 0, []
        while i < len(lines):
            parsed = _directive(lines, i) if _OPENING.match(lines[i]) else None
            if parsed and parsed[0] == "solution-start":
                if solution is not None:
                    raise ValueError(f"{chapter}: solution {parsed[1]} starts inside solution {label}")
                markdown.append("\n".join(text))
                text, solution, label = [], [], parsed[1]
                i = parsed[4]
                continue
            if parsed and parsed[0] == "solution-end":
                if solution is None:
                    raise ValueError(f"{chapter}: a solution ends that never started")
                if "\n".join(text).strip():
                    solution.append(("markdown", "\n".join(text).strip("\n")))
                flush_markdown()
                cells.append(_solution_cell(label, solution, source_dir))
                text, solution = [], None
                i = parsed[4]
                continue
            text.append(lines[i])
            i += 1
        if solution is not None:
            if "\n".join(text).strip():
                solution.append(("markdown", "\n".join(text).strip("\n")))
        else:
            markdown.append("\n".join(text))
    if solution is not None:
        raise ValueError(f"{chapter}: solution {label} never ends")
    flush_markdown()
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "ae_course": {"edition": "learner", "chapter": chapter.name}})
    nbformat.validate(notebook)
    return notebook


def write_learner_edition(chapters: list[Path] | None = None, out: str | Path = ROOT / "learner") -> list[Path]:
    """Write the learner's edition of `chapters` (default: every numbered chapter) into `out` as .ipynb files.

    Each notebook is written atomically; the notebooks import ``ae_course`` like the chapters do, so they run
    anywhere the package is installed. Returns the paths written.
    """
    from .files import atomic_write

    chapters = chapters or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
    written = []
    for chapter in chapters:
        notebook = learner_notebook(chapter)
        path = Path(out) / (Path(chapter).stem + ".ipynb")
        atomic_write(path, nbformat.writes(notebook).encode() + b"\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter .md files (default: all numbered chapters)")
    parser.add_argument("--out", type=Path, default=ROOT / "learner", help="folder for the notebooks (default: learner/)")
    args = parser.parse_args(argv)
    for path in write_learner_edition(args.chapters or None, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
