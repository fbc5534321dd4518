"""MkDocs hook: render the Sphinx cross-reference roles of the docstrings as inline code.

The docstrings say ``:func:`make_scan``` or ``:mod:`~mssoft.synthetic.sites```, which read well in
``help()``; in the API reference the role prefix (and the ``~`` shortening mark) would show as
text, so it is dropped and the name stays as code.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const):<code>~?")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Drop the role prefix before every ``<code>`` span the docstrings produced."""
    return _ROLE.sub("<code>", html)
