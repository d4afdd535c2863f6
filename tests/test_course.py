"""The book works as a course: the reading order of the table of contents is the order of the chapter files
and of the numbers the rendered book shows."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_FILE = re.compile(r"chapters/(\d\d)_[a-z_]+$")


def numbered_chapters() -> list[str]:
    """The files of the numbered parts of ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [chapter["file"] for part in toc["parts"] if part.get("numbered") for chapter in part["chapters"]]


def test_reading_order_is_file_order():
    files = numbered_chapters()
    numbers = []
    for file in files:
        match = CHAPTER_FILE.match(file)
        assert match, f"{file}: a numbered chapter is named chapters/NN_name"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(1, len(files) + 1)), f"_toc.yml reads {files}: file numbers {numbers}"
    on_disk = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "chapters").glob("[0-9]*.md"))
    assert on_disk == files, "every numbered chapter file is in the table of contents, and only those"


def test_only_the_back_matter_is_unnumbered():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    unnumbered = [chapter["file"] for part in toc["parts"] if not part.get("numbered") for chapter in part["chapters"]]
    assert unnumbered == ["chapters/references"]


# ---------------------------------------------------------------------------------------------------------
# What every chapter gives a learner (the issue "a course a learner can follow"): objectives and
# prerequisites at the top, a summary with numbers from the build at the end, the code of the algorithm on
# the page (included from the package), and at least one exercise in which the learner writes the real thing.
import jupytext  # noqa: E402
import pytest  # noqa: E402

CHAPTERS = [ROOT / f"{file}.md" for file in numbered_chapters()]
MAX_CODE_LINE = 110  # characters: what fits the code column of a 1280-px window (tests/test_book.py measures it)


def _markdown(path: Path) -> str:
    return path.read_text()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_objectives_and_prerequisites(path):
    text = _markdown(path)
    match = re.search(r"```\{admonition\} Objectives and prerequisites\n:class: objectives\n(.*?)\n```", text, re.S)
    assert match, "the chapter opens with an 'Objectives and prerequisites' admonition (class objectives)"
    body = match.group(1)
    assert "**After this chapter you can**" in body and "**It assumes**" in body
    assert body.count("\n- ") >= 2, "at least two objectives, one per bullet"
    first_heading = text.index("\n## ")
    assert match.start() < first_heading, "the objectives come before the first section"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_closes_with_a_summary_of_measured_results(path):
    text = _markdown(path)
    assert "\n## Summary\n" in text, "a '## Summary' section"
    summary = text.split("\n## Summary\n", 1)[1].split("\n## ", 1)[0]
    assert "```{admonition} Summary\n:class: summary\n" in summary
    assert re.search(r"\{glue:text\}`[a-z0-9_]+(:[^`]*)?`", summary), "the summary quotes numbers glued by the build"
    assert "{ref}`" in summary or "{doc}`" in summary, "the summary points on (the next chapter, or the next step)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_glued_names_are_glued(path):
    """Every `{glue:...}` name quoted in the text is glued by a code cell of the same chapter."""
    text = _markdown(path)
    quoted = set(re.findall(r"\{glue(?::[a-z]+)?\}`([A-Za-z0-9_]+)", text))
    glued = set(re.findall(r"glue\(\s*[\"']([A-Za-z0-9_]+)[\"']", text))
    assert quoted <= glued, f"quoted but never glued: {sorted(quoted - glued)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_shows_the_package_code_it_teaches(path):
    listings = re.findall(r"```\{literalinclude\} \.\./ae_course/([a-z_/]+\.py)\n((?::[a-z-]+:.*\n)*)", _markdown(path))
    assert listings, "at least one listing included from the package source"
    for module, options in listings:
        assert (ROOT / "ae_course" / module).exists()
        assert ":pyobject:" in options, f"{module}: include a named object (:pyobject:), not line numbers"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_an_exercise_that_builds_a_skill(path):
    text = _markdown(path)
    skills = re.findall(r"`{3,4}\{exercise\}[^\n]*\n:label: ([a-z0-9-]+)\n:class: skill\n", text)
    assert skills, "at least one exercise of class skill (the learner writes a model, loss, loop, estimator or experiment)"
    for label in skills:
        assert f"{{solution-start}} {label}\n" in text, f"{label} has a solution"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_fits_the_page(path):
    notebook = jupytext.read(path, fmt="md:myst")
    long = [line for cell in notebook.cells if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_CODE_LINE]
    assert not long, f"{len(long)} code lines longer than {MAX_CODE_LINE} characters, e.g. {long[0]!r}"


def _included_objects():
    for path in CHAPTERS:
        for module, name in re.findall(r"```\{literalinclude\} \.\./ae_course/([a-z_/]+\.py)\n(?::[a-z-]+:.*\n)*?"
                                       r":pyobject: ([A-Za-z_.]+)", _markdown(path)):
            yield path.stem, module, name


def test_listings_fit_the_page():
    """The package code a chapter includes fits the code column too."""
    import ast

    too_long = []
    for chapter, module, name in _included_objects():
        source = (ROOT / "ae_course" / module).read_text()
        tree = ast.parse(source)
        node = tree
        for part in name.split("."):
            node = next(child for child in ast.iter_child_nodes(node)
                        if isinstance(child, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and child.name == part)
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        lines = source.splitlines()[start - 1:node.end_lineno]
        too_long += [f"{chapter}: {module}:{name}: {len(line)}" for line in lines if len(line) > MAX_CODE_LINE]
    assert not too_long, too_long
