"""MkDocs hook: keep the ``<scan>``-style placeholders of the commands' help on the CLI page.

mkdocs-click puts each command's description into the page as Markdown, where a placeholder such
as ``OUT/<scan>_softmask.nii.gz`` reads as an unknown HTML tag and vanishes from the rendered
page. On that page, every tag whose name is not an HTML element the page itself uses is written
back as text.
"""

from __future__ import annotations

import re
from typing import Any

CLI_PAGE = "reference/cli.md"

#: Elements the rendered CLI page is made of (Markdown output and mkdocs-click's own markup).
_HTML_TAGS = frozenset(
    "a abbr b br code div em h1 h2 h3 h4 h5 h6 hr i li ol p pre span strong sub sup table tbody "
    "td th thead tr ul".split()
)
_TAG = re.compile(r"<(/?)([A-Za-z][\w.-]*)>")


def _escape_placeholder(match: re.Match[str]) -> str:
    if match.group(2).lower() in _HTML_TAGS:
        return match.group(0)
    return f"&lt;{match.group(1)}{match.group(2)}&gt;"


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    """Write unknown tags back as text, on the CLI page only."""
    if page.file.src_uri != CLI_PAGE:
        return html
    return _TAG.sub(_escape_placeholder, html)
