"""bertviz, made self-contained: the one place that adapts bertviz's HTML.

bertviz 1.4 returns HTML that loads require.js, d3 5.7 and jQuery from cdnjs, so its views
are blank offline, and two views on one page can clash through require.js ("Mismatched
anonymous define()"). Here each view becomes one ``<iframe srcdoc=...>`` document:

- d3 v5 and jQuery are inlined from files that PyPI packages ship (``mpld3`` ships
  ``d3.v5.min.js``, ``XStatic-jQuery`` ships ``jquery.min.js``); nothing is fetched;
- bertviz's ``require.config(...)`` / ``requirejs([...], callback)`` calls are served by a
  ten-line shim that hands the callback the inlined ``jQuery`` and ``d3``;
- the iframe gives every view its own globals, so views do not interfere;
- ``</`` inside every inlined script is written ``<\\/`` (same meaning in JavaScript), so no
  token text, however hostile, can close a script element; the whole document is
  attribute-escaped into ``srcdoc``.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
from functools import cache
from pathlib import Path

ASSETS = {
    # name: (PyPI distribution, file inside it)
    "jquery": ("XStatic-jQuery", "xstatic/pkg/jquery/data/jquery.min.js"),
    "d3": ("mpld3", "mpld3/js/d3.v5.min.js"),
}

# bertviz's scripts call require.config(...) then requirejs(['jquery', 'd3'], callback).
SHIM = """
window.require = window.require || {};
window.require.config = function () {};
window.requirejs = function (names, callback) {
  var modules = {jquery: window.jQuery, d3: window.d3};
  callback.apply(null, names.map(function (name) { return modules[name]; }));
};
"""

_CDN_SCRIPT = re.compile(r'<script src="https?://[^"]*"></script>')
# bertviz writes each inline script as OPEN + code + CLOSE. Token text only occurs inside
# JSON, which has no raw newlines, so these exact separators cannot come from a token.
_OPEN = '\n<script type="text/javascript">\n'
_CLOSE = "\n</script>\n"


@cache
def asset(name: str) -> str:
    """The text of an inlined JavaScript library, read from the package that ships it."""
    distribution, relative = ASSETS[name]
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise ImportError(
            f"the attention views inline {name} from the PyPI package {distribution!r}, "
            f"which is not installed: run `pip install {distribution}`"
        )
    return path.read_text(encoding="utf-8")


def inline_script(code: str) -> str:
    """A <script> element whose content cannot end the element early."""
    return "<script>" + code.replace("</", "<\\/").replace("<!--", "<\\!--") + "</script>"


def self_contained(bertviz_html: str, height: int, title: str) -> str:
    """Turn the HTML bertviz returns (``html_action='return'``) into one isolated iframe."""
    markup, *scripts = _CDN_SCRIPT.sub("", bertviz_html).split(_OPEN)
    if not scripts or not all(_CLOSE in script for script in scripts):
        raise ValueError("unexpected bertviz output: no inline script found")
    code = "".join(inline_script(script[: script.rindex(_CLOSE)]) for script in scripts)
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        + inline_script(asset("jquery"))
        + inline_script(asset("d3"))
        + inline_script(SHIM)
        + "</head><body style='margin:0;background:white'>"
        + markup
        + code
        + "</body></html>"
    )
    return (
        f'<iframe class="lmle-attention" title="{html.escape(title)}" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
        f'sandbox="allow-scripts" srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )
