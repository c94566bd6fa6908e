"""A Sphinx extension for the rendered book: each page's scripts once.

sphinx-thebe 0.3 (and sphinx-togglebutton) add their inline scripts to every page again while
the page is written, so Sphinx 7.4 writes them twice; the repeated ``const THEBE_JS_URL`` is a
console error on every page. Jupyter Book adds both extensions itself. The repeats are dropped
after every other handler has run.
"""

from __future__ import annotations

from typing import Any


def _unique_scripts(app, pagename: str, templatename: str, context: dict[str, Any],
                    doctree) -> None:
    """Drop the repeats of a script (same file or body, same attributes) from a page; an
    inline script's file is None or "" depending on who added it."""
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _unique_scripts, priority=900)  # after those adding them
    return {"parallel_read_safe": True, "parallel_write_safe": True}
