"""Keep the built book offline and its pages free of console errors (one local extension).

jupyter-book 1.x always loads sphinx-thebe, whose live kernels need unpkg.com and Binder.
This book has them off (``launch_buttons.thebe: false`` in ``_config.yml``), yet sphinx-thebe
still adds a script naming thebe's CDN to every page, and adds it once more each time Sphinx
re-reads the sources, which browsers then report as "Identifier 'THEBE_JS_URL' has already
been declared". This extension disconnects sphinx-thebe's script-adding handler, so no page
carries those scripts.

Progress bars: under Jupyter, tqdm draws an ipywidget, whose saved state needs
``@jupyter-widgets/html-manager`` from a CDN to show in HTML. The pages' kernels inherit this
process's environment, so ``TQDM_DISABLE=1`` is set here for the build (``nox -s book`` sets
it too), and ``nb_ipywidgets_js`` is emptied in ``_config.yml``.

Diagrams from ``file://``: sphinxcontrib-mermaid loads mermaid as an ES module
(``<script type="module">import mermaid from ".../mermaid.esm.min.mjs"``), and browsers
refuse to import modules from file URLs, so a reader who opens ``index.html`` from disk saw
the diagrams' source text. After the build, :func:`_classic_mermaid` rewrites that script on
every page into mermaid's single-file build (``mermaid.min.js``, a classic script that works
from disk and over HTTP) followed by the same code, run when the document is parsed (as the
module was: modules are deferred) inside a function, so that its names stay out of the
page's globals. It registers the ``load`` handler that draws the diagrams, as before.

The root ``index.html`` is a one-line redirect that sphinx-external-toc writes at the end
of the build. It names no icon, so a browser opening it over HTTP asks the server for
``/favicon.ico``, which the book does not have, and logs a 404 whenever that request goes
out before the redirect: :func:`_redirect_with_icon` adds the book's icon to it.

Every page that is a notebook (a MyST page with a jupytext header) gets a "Run this page" note
under its title (:func:`_run_this_page`) that links to the page as a notebook, written next
to its HTML at the end of the build (:func:`_write_notebooks`, jupytext's conversion, without
outputs: the reader runs it). The stylesheet ``static/lmle.css`` keeps the content column
from scrolling sideways: long code lines and table cells wrap.

``tools/check_built_book.py`` fails the build if any page still loads a script, stylesheet
or module from another host, or names thebe's CDN.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_MERMAID_MODULE = re.compile(
    r'<script type="module">import mermaid from "(?P<folder>[^"]*/)mermaid\.esm\.min\.mjs";'
    r"(?P<code>.*?)</script>",
    re.DOTALL,
)


def _drop_thebe_scripts(app) -> None:
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        handler = listener.handler
        if handler.__module__ == "sphinx_thebe" and handler.__name__ == "init_thebe_core":
            app.disconnect(listener.id)


def _classic_mermaid(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        rewritten = _MERMAID_MODULE.sub(
            lambda m: (
                f'<script src="{m["folder"]}mermaid.min.js"></script>\n'
                "<script>document.addEventListener('DOMContentLoaded', async () => {"
                f"{m['code']}}});</script>"
            ),
            html,
        )
        if rewritten != html:
            page.write_text(rewritten, encoding="utf-8")


def _redirect_with_icon(app, exception) -> None:
    index = Path(app.outdir) / "index.html"
    if exception is not None or app.builder.format != "html" or not index.exists():
        return
    html = index.read_text(encoding="utf-8")
    if html.lstrip().startswith('<meta http-equiv="Refresh"') and 'rel="icon"' not in html:
        icon = Path(app.config.html_favicon or "").name
        if icon:
            index.write_text(f'<link rel="icon" href="_static/{icon}">\n{html}', encoding="utf-8")


def _is_notebook(app, docname: str) -> bool:
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".md" or not source.exists():
        return False
    return source.read_text(encoding="utf-8").startswith("---\njupytext:")


def _run_this_page(app, doctree) -> None:
    from docutils import nodes

    docname = app.env.docname
    sections = list(doctree.findall(nodes.section))
    if not sections or not _is_notebook(app, docname):
        return
    notebook = Path(docname).name + ".ipynb"
    note = (
        '<div class="admonition tip lmle-run-page"><p class="admonition-title">Run this page</p>'
        "<p>This page is a notebook. "
        f'<a class="reference download" href="{notebook}" download="{notebook}">Download '
        f"{notebook}</a> and run it in Jupyter where <code>lm_layers_explainer</code> is "
        "installed, or open every page in JupyterLab from a clone of the repository with "
        "<code>python3 -m nox -s notebooks</code>.</p></div>"
    )
    title = sections[0].next_node(nodes.title)
    sections[0].insert(sections[0].index(title) + 1, nodes.raw("", note, format="html"))


def _write_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import jupytext

    for docname in sorted(app.env.found_docs):
        if _is_notebook(app, docname):
            notebook = jupytext.read(app.env.doc2path(docname))
            jupytext.write(notebook, Path(app.outdir) / f"{docname}.ipynb", fmt="ipynb")


def _add_stylesheet(app, config) -> None:
    config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app):
    os.environ.setdefault("TQDM_DISABLE", "1")
    app.connect("builder-inited", _drop_thebe_scripts)
    app.connect("config-inited", _add_stylesheet)
    app.add_css_file("lmle.css")
    app.connect("doctree-read", _run_this_page)
    app.connect("build-finished", _write_notebooks)
    app.connect("build-finished", _classic_mermaid)
    # after sphinx-external-toc's handler (default priority 500) has written the redirect
    app.connect("build-finished", _redirect_with_icon, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
