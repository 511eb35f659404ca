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

``tools/check_built_book.py`` fails the build if any page still loads a script, stylesheet
or module from another host, or names thebe's CDN.
"""

from __future__ import annotations

import os


def _drop_thebe_scripts(app) -> None:
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        handler = listener.handler
        if handler.__module__ == "sphinx_thebe" and handler.__name__ == "init_thebe_core":
            app.disconnect(listener.id)


def setup(app):
    os.environ.setdefault("TQDM_DISABLE", "1")
    app.connect("builder-inited", _drop_thebe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
