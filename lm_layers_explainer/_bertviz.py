"""bertviz, made self-contained: the one place that adapts bertviz's HTML.

bertviz 1.4 returns HTML that loads require.js, d3 5.7 and jQuery from cdnjs, so its views
are blank offline, and two views on one page can clash through require.js ("Mismatched
anonymous define()"). Here each view becomes one ``<iframe srcdoc=...>`` document:

- d3 v5 and jQuery are inlined from files that PyPI packages ship (``mpld3`` ships
  ``d3.v5.min.js``, ``XStatic-jQuery`` ships ``jquery.min.js``); nothing is fetched;
- bertviz's ``require.config(...)`` / ``requirejs([...], callback)`` calls are served by a
  ten-line shim that hands the callback the inlined ``jQuery`` and ``d3``;
- the iframe gives every view its own globals, so views do not interfere;
- the drawing is fitted to its frame (:data:`FIT`): bertviz draws at fixed sizes (the model
  view is 970 px wide, an expanded neuron view about 1100 px), wider than a book's column, so
  a drawing wider than the frame is zoomed out to its width, and the frame is told the
  drawing's height (a ``postMessage`` that the script after the iframe answers by resizing
  it). Where the page runs no scripts (an untrusted notebook) the frame keeps the height
  estimated in Python;
- ``</`` inside every inlined script is written ``<\\/`` (same meaning in JavaScript), so no
  token text, however hostile, can close a script element; the whole document is
  attribute-escaped into ``srcdoc``;
- the neuron view is drawn from saved numbers (:func:`neuron_html`), not from a model, so a
  result loaded from a file draws it as well.
"""

from __future__ import annotations

import html
import importlib.metadata
import importlib.resources
import json
import re
import uuid
from functools import cache
from pathlib import Path

import numpy as np

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

# Runs inside the frame: after each redraw (bertviz re-renders on every drop-down change and
# shows the neuron view's expanded columns by switching a group's visibility), measure what
# is drawn and visible at zoom 1, zoom the body out if that is wider than the frame, and send
# the page the drawn height at that zoom. (A timeout, not requestAnimationFrame, which Chrome
# does not run in a cross-origin frame outside the viewport: those views never fitted.)
FIT = """
(function () {
  var pending = false;
  function extent() {
    var right = 0, bottom = 0;
    document.querySelectorAll('body *').forEach(function (el) {
      if (el.tagName === 'SCRIPT') return;
      var style = getComputedStyle(el);
      if (style.visibility === 'hidden' || style.display === 'none') return;
      var box = el.getBoundingClientRect();
      if (box.width === 0 && box.height === 0) return;
      right = Math.max(right, box.right);
      bottom = Math.max(bottom, box.bottom);
    });
    return {right: right + window.scrollX, bottom: bottom + window.scrollY};
  }
  function fit() {
    pending = false;
    document.body.style.zoom = 1;
    var drawn = extent();
    var width = document.documentElement.clientWidth;
    var zoom = drawn.right > width + 1 ? width / drawn.right : 1;
    document.body.style.zoom = zoom;
    parent.postMessage({lmleViewHeight: Math.ceil(drawn.bottom * zoom) + 8}, '*');
  }
  function later() {
    if (!pending) { pending = true; setTimeout(fit, 30); }
  }
  new MutationObserver(later).observe(document.body, {
    childList: true, subtree: true, attributes: true, attributeFilter: ['visibility']
  });
  window.addEventListener('resize', later);
  window.addEventListener('load', later);
})();
"""

# Runs in the page, right after the frame: resizes that frame (and no other) to the height
# its drawing reports.
RESIZE = """
(function (script) {
  var frame = script && script.previousElementSibling;
  if (!frame) return;
  window.addEventListener('message', function (event) {
    var height = event.data && event.data.lmleViewHeight;
    if (event.source === frame.contentWindow && height > 0 && height < 100000) {
      frame.style.height = Math.ceil(height) + 'px';
    }
  });
})(document.currentScript);
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
    """Turn the HTML bertviz returns (``html_action='return'``) into one isolated iframe,
    followed by the script that resizes it to its drawing; ``height`` is the frame's height
    until the drawing reports its own."""
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
        + inline_script(FIT)
        + "</body></html>"
    )
    return (
        f'<iframe class="lmle-attention" title="{html.escape(title)}" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #ddd;display:block" '
        f'sandbox="allow-scripts" srcdoc="{html.escape(document, quote=True)}"></iframe>'
        + inline_script(RESIZE)
    )


def neuron_html(
    attention, queries, keys, tokens: list[str], sentence_b_start: int | None, **options
) -> str:
    """The HTML bertviz's ``neuron_view.show(..., html_action="return")`` gives, drawn from
    numbers instead of a model: ``attention`` (layers, heads, tokens, tokens), ``queries`` and
    ``keys`` (layers, heads, tokens, head size) of the ``tokens``; the second text from
    ``sentence_b_start``. ``options``: ``display_mode``, ``layer``, ``head``. Weights are
    rounded to 4 decimals and vectors to 3, as bertviz would show them; a model whose weights
    are all zero above the diagonal is shown as causal (bertviz's ``bidirectional=False``)."""
    weights = np.round(np.asarray(attention, dtype=np.float64), 4)
    queries = np.round(np.asarray(queries, dtype=np.float64), 3)
    keys = np.round(np.asarray(keys, dtype=np.float64), 3)

    def part(rows: slice, columns: slice) -> dict:
        return {
            "attn": weights[:, :, rows, columns].tolist(),
            "left_text": tokens[rows],
            "right_text": tokens[columns],
            "queries": queries[:, :, rows].tolist(),
            "keys": keys[:, :, columns].tolist(),
        }

    parts = {"all": part(slice(None), slice(None))}
    filters = ""
    if sentence_b_start is not None:
        a, b = slice(0, sentence_b_start), slice(sentence_b_start, None)
        parts.update(aa=part(a, a), bb=part(b, b), ab=part(a, b), ba=part(b, a))
        filters = (
            '<span class="dropdown-label">Attention: </span><select id="filter">'
            '<option value="all">All</option><option value="aa">Sentence A -> Sentence A</option>'
            '<option value="ab">Sentence A -> Sentence B</option>'
            '<option value="ba">Sentence B -> Sentence A</option>'
            '<option value="bb">Sentence B -> Sentence B</option></select>'
        )
    root = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": parts,
        "default_filter": "all",
        "root_div_id": root,
        "bidirectional": bool(np.triu(weights, 1).any()),
        **options,
    }
    markup = (
        f'<div id="{root}" style="padding:8px;font-family:\'Helvetica Neue\', Helvetica, Arial, '
        'sans-serif;"><span style="user-select:none"><span class="dropdown-label">Layer: </span>'
        '<select id="layer"></select><span class="dropdown-label">Head: </span> '
        f"<select id=\"att_head\"></select>{filters}</span><div id='vis'></div></div>"
    )
    code = importlib.resources.files("bertviz").joinpath("neuron_view.js").read_text("utf-8")
    return (
        markup + _OPEN + f"window.bertviz_params = {json.dumps(params)}" + _CLOSE
        + _OPEN + code + _CLOSE
    )  # fmt: skip
