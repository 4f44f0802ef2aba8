"""The book build's own Sphinx hooks (``sphinx.extra_extensions`` in ``_config.yml``).

- The Colab launch button of a chapter opens its generated twin in
  ``book/_colab/`` (``rpbook.colab_export``), not the MyST source, and a twin
  that is out of date with its chapter is a build warning (``-W``: an error).
- Every inline script is emitted once. sphinx-thebe (loaded by Jupyter Book 1
  even with ``launch_buttons.thebe: false``) adds its ``const THEBE_JS_URL``
  script when the docs are read, after the HTML builder exists, so Sphinx holds
  it twice (once from its registry, once from the builder) and the browser logs
  ``Identifier 'THEBE_JS_URL' has already been declared`` on every page.
"""
from __future__ import annotations

from pathlib import Path

from .colab_export import colab_path, export_book


def point_colab_button_at_twin(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Rewrite the Colab launch URL of a notebook page to its ``book/_colab/`` twin (chapter 1, *How to use this book*)."""
    root = Path(app.srcdir)
    source = root / f"{pagename}.ipynb"
    if not source.exists():
        return
    twin_path = colab_path(root, source)
    if not twin_path.exists():  # a plain-Markdown notebook (a student lab): Colab opens it as it is
        return
    twin = twin_path.relative_to(root).as_posix()
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if isinstance(group, dict) else []:
            if button.get("text") == "Colab" and button.get("url", "").endswith(f"/{pagename}.ipynb"):
                button["url"] = button["url"][: -len(f"{pagename}.ipynb")] + twin


def drop_duplicate_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Keep the first of identical script entries (same file or same inline body)."""
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def warn_if_colab_twins_are_stale(app) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    try:
        stale = export_book(app.srcdir, check=True)
    except ValueError as err:
        log.warning(f"Colab notebooks: {err}")
        return
    if stale:
        log.warning(f"Colab notebooks out of date ({', '.join(p.name for p in stale)}): "
                    "run `python -m rpbook.colab_export`")


def setup(app) -> dict:
    """Register the hooks (Sphinx calls this for ``rpbook.sphinx_ext``)."""
    app.connect("builder-inited", warn_if_colab_twins_are_stale)
    app.connect("html-page-context", point_colab_button_at_twin, priority=600)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
