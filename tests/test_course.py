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
