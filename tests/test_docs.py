"""The README stays a short entry point into docs/, and the documentation stands alone.

The site itself is checked by `mkdocs build --strict` in `make test` (links, anchors, navigation,
docstrings); these tests cover what that build does not see: the README, which lives outside
docs/, and references the user cannot follow.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250

#: Markdown links and images: ](target) with an optional #anchor.
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")
#: A tracker's issue numbers ("issue 7", "issues 7 and 16", "#12") or a path to the shared folder.
INTERNAL_REFERENCE = re.compile(r"\bissues? #?\d+|(?<![\w/])#\d+\b|\.\./shared|/work/shared", re.I)


def user_documents() -> list[Path]:
    return [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_links_point_to_files_that_exist():
    targets = [m.group(1) for m in LINK.finditer(README.read_text(encoding="utf-8"))]
    local = [t for t in targets if "://" not in t]
    assert any(t.startswith("docs/") for t in local), "the README links into docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_documentation_names_no_tracker_issue_and_no_shared_folder():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in user_documents()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL_REFERENCE.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_pattern_catches_what_it_should():
    assert INTERNAL_REFERENCE.search("Targets (issues 7 and 16), checked")
    assert INTERNAL_REFERENCE.search("see #12")
    assert INTERNAL_REFERENCE.search("read ../shared/notes.md")
    link = "[keras#20585](https://github.com/keras-team/keras/issues/20585)"
    assert not INTERNAL_REFERENCE.search(link)
    assert not INTERNAL_REFERENCE.search("see [Data](#data-layouts)")
