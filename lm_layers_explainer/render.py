"""Shared rendering: self-contained, escaped HTML for notebooks and static figures for books.

Every explainer result derives from :class:`Result`: it shows itself in a notebook
(``_repr_html_``), exports a table (``to_frame``) and saves a picture or its data
(``save``; a result file is written by :func:`to_data` and :func:`dumps`, and read back,
checked, by :mod:`.saving`).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import math
import re
from pathlib import Path

import numpy as np

STATIC_SUFFIXES = (".png", ".svg", ".pdf")

FIGURE_STYLE = {"text.parse_math": False, "text.usetex": False}
"""Figure text is drawn as it is: a ``$`` in a token is a dollar sign, not TeX."""
SAVE_STYLE = {"svg.hashsalt": "lm-layers-explainer"}
"""Fixed SVG element ids (matplotlib draws random ones otherwise): saved files reproduce."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

INLINE_DPI = 100
"""Resolution of the pictures that results embed in their HTML: at 100 dpi a figure 7.2 inches
wide is 720 px, narrower than the book's content column at a 1280 px window (740 px), so it
shows at its natural size, and 9-point text is 12.5 px, no smaller than the book's smallest
print (its output tables, 12 px)."""
INLINE_WIDTH = 7.2
"""Width in inches of the figures results embed in their HTML (see :data:`INLINE_DPI`)."""
INLINE_FONT = 9

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
"""Ten colours that stay apart on screen and in print (matplotlib's tab10), for factors and
labels."""
"""Smallest font size, in points, of the figures results embed in their HTML."""


def progress(iterable=None, *, desc: str, total: int | None = None, show: bool = True):
    """A tqdm progress bar (a widget in notebooks), hidden when ``show`` is False or the
    environment sets ``TQDM_DISABLE`` (tqdm's notebook widget ignores that variable)."""
    import os

    from tqdm.auto import tqdm

    hidden = not show or os.environ.get("TQDM_DISABLE", "").lower() in {"1", "true", "yes"}
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=hidden)


def escape(text: str) -> str:
    """HTML-escape text, quotes included: every piece of model or user text goes through it."""
    return html.escape(str(text), quote=True)


def visible(token: str) -> str:
    """Show a token's whitespace: a leading space as '␣', newlines and tabs as escapes, other
    control characters as ``\\xNN``."""
    shown = token.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")
    return _control_escaped(shown)


def _control_escaped(text: str) -> str:
    """Control characters as ``\\xNN``: they cannot appear in SVG (XML) text at all."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def png(figure, dpi: int) -> bytes:
    """The figure as PNG bytes (its text drawn literally); the figure is closed."""
    import io

    import matplotlib
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    with matplotlib.rc_context(FIGURE_STYLE):
        figure.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()


def inline_png(figure, alt: str) -> str:
    """An ``<img>`` carrying the figure as a PNG at :data:`INLINE_DPI` (then closed), no wider
    than its container."""
    import base64

    picture = base64.b64encode(png(figure, INLINE_DPI)).decode("ascii")
    return f'<img alt="{escape(alt)}" style="max-width:100%" src="data:image/png;base64,{picture}">'


def _literal_figure(figure_method):
    """Wrap a result's ``figure()``: its text is drawn literally (no TeX from ``$``) and
    holds no control characters, whatever the tokens contain."""

    @functools.wraps(figure_method)
    def figure(self, *args, **kwargs):
        import matplotlib
        from matplotlib.text import Text

        with matplotlib.rc_context(FIGURE_STYLE):
            drawn = figure_method(self, *args, **kwargs)
        for text in drawn.findobj(Text):
            if _CONTROL.search(text.get_text()):
                text.set_text(_control_escaped(text.get_text()))
        _escape_tick_labels(drawn)
        return drawn

    figure.literal = True
    return figure


def _escape_tick_labels(figure) -> None:
    """Tick labels given as text (``set_xticks(positions, labels)``) are drawn anew from
    their formatter at each draw: escape what the formatter gives, not only the drawn texts."""
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            for formatter in (axis.get_major_formatter(), axis.get_minor_formatter()):
                if isinstance(formatter, FixedFormatter):
                    formatter.seq = [_control_escaped(str(label)) for label in formatter.seq]
                elif isinstance(formatter, FuncFormatter) and not hasattr(formatter, "escaped"):
                    formatter.func = functools.partial(_escaped_label, formatter.func)
                    formatter.escaped = True


def _escaped_label(func, *args) -> str:
    return _control_escaped(str(func(*args)))


class Result:
    """Base class of explainer results.

    Subclasses implement :meth:`to_frame`, :meth:`to_html` and :meth:`figure`. Every
    subclass's ``figure`` draws its text literally (see :func:`_literal_figure`).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("figure")
        if own is not None and not getattr(own, "literal", False):
            cls.figure = _literal_figure(own)

    def to_frame(self):
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def figure(self):
        """A matplotlib figure of the result (the static picture the book shows)."""
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self.to_html()

    def static(self, **figure_options):
        """The static picture as an ``IPython.display.Image`` (PNG), for pages that must read
        well without JavaScript. Options go to :meth:`figure`."""
        from IPython.display import Image

        return Image(png(self.figure(**figure_options), dpi=120))

    def save(self, path, **figure_options) -> Path:
        """Save as ``.html`` (self-contained), as a static ``.png``, ``.svg`` or ``.pdf``, or
        as ``.json`` (the data, read back by :func:`~lm_layers_explainer.saving.load_result`).

        >>> result.save("tokens.svg")
        PosixPath('tokens.svg')
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            path.write_text(dumps(self), encoding="utf-8")
        elif suffix in (".html", ".htm"):
            path.write_text(self.to_html(), encoding="utf-8")
        elif suffix in STATIC_SUFFIXES:
            import matplotlib
            import matplotlib.pyplot as plt

            figure = self.figure(**figure_options)
            # No date, and fixed element ids: saved SVG/PDF files are the same bytes each time.
            metadata = {"Date": None} if suffix in (".svg", ".pdf") else {}
            with matplotlib.rc_context({**FIGURE_STYLE, **SAVE_STYLE}):
                figure.savefig(path, bbox_inches="tight", dpi=150, metadata=metadata)
            plt.close(figure)
        else:
            raise ValueError(
                f"path must end in .html, .json, {', '.join(STATIC_SUFFIXES)}; got {path.name!r}"
            )
        return path


# --------------------------------------------------------------------------- grids
# Printed numbers: what a view prints must be the same on every processor within the
# tolerance of tools/compare_outputs.py. A value that rounds to zero prints without a sign
# ("0.00", not "-0.00"), and a score that is float noise beside the largest one prints as 0.

NOISE = 1e-6
"""A score smaller than NOISE times the largest in its view is float32 rounding: shown as 0."""


def signed(value: float, digits: int = 2) -> str:
    """A value with its sign, except one that rounds to zero.

    >>> signed(0.1234), signed(-0.004), signed(-0.0), signed(-1.5, 1)
    ('+0.12', '0.00', '0.00', '-1.5')
    """
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def fixed(value: float, digits: int = 2) -> str:
    """A value to ``digits`` decimals, with no sign on one that rounds to zero.

    >>> fixed(0.456), fixed(-0.001), fixed(-0.5)
    ('0.46', '0.00', '-0.50')
    """
    text = f"{value:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def score(value: float, scale: float, digits: int = 3) -> str:
    """A score to ``digits`` significant digits, or 0 when it is noise beside ``scale`` (the
    largest magnitude in the same view).

    >>> score(0.0605, 0.77), score(-1.19e-07, 0.77), score(-9.3e-05, 0.002)
    ('0.0605', '0', '-9.3e-05')
    """
    if abs(value) <= NOISE * abs(scale):
        return "0"
    return f"{value:.{digits}g}"


# The layer-by-layer views (predictions, rankings) are grids: rows are layers, columns are
# candidates or positions, each cell a short text on a shade. One helper draws the HTML, one
# the static figure, from the same shades.


def shade(value: float, cmap: str = "Blues") -> tuple[str, str]:
    """Background and text colour (hex) for a value in [0, 1] on a matplotlib colormap."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    value = min(max(float(value), 0.0), 1.0)
    red, green, blue, _ = colormaps[cmap](0.05 + 0.9 * value)
    text = "#ffffff" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.55 else "#000000"
    return to_hex((red, green, blue)), text


def html_grid(
    title: str,
    column_labels: list[str],
    row_labels: list[str],
    cells: list[list[str]],
    values: list[list[float]],
    cmap: str = "Blues",
    tooltips: list[list[str]] | None = None,
    split: int | None = None,
) -> str:
    """A self-contained HTML table; every text is escaped here. Row labels break only after
    an underscore (``shapley_value_sampling``), so that wide grids fit a book's column.
    ``split``: a column index before which a line parts two blocks of columns."""

    def line(c):
        return "border-left:3px solid #333;" if c == split else ""

    head = "".join(
        f'<th style="{line(c)}padding:2px 4px;font-family:monospace">{escape(label)}</th>'
        for c, label in enumerate(column_labels)
    )
    body = []
    for r, (label, row) in enumerate(zip(row_labels, cells, strict=True)):
        tds = []
        for c, text in enumerate(row):
            background, color = shade(values[r][c], cmap)
            tip = f' title="{escape(tooltips[r][c])}"' if tooltips else ""
            tds.append(
                f'<td{tip} style="{line(c)}background:{background};color:{color};padding:2px 4px;'
                f'font-family:monospace;white-space:pre;text-align:center">{escape(text)}</td>'
            )
        shown = escape(label).replace(" ", "&nbsp;").replace("_", "_<wbr>")
        body.append(f'<tr><th style="padding:2px 4px">{shown}</th>{"".join(tds)}</tr>')
    return (
        f'<div class="lmle-grid"><div style="margin-bottom:4px">{escape(title)}</div>'
        f'<table style="border-collapse:collapse;font-size:12px"><tr><th></th>{head}</tr>'
        f"{''.join(body)}</table></div>"
    )


def grid_figure(
    title: str,
    column_labels: list[str],
    row_labels: list[str],
    cells: list[list[str]],
    values,
    cmap: str = "Blues",
    row_axis: str = "layer",
    split: int | None = None,
):
    """The static twin of :func:`html_grid`: a matplotlib figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.clip(np.asarray(values, dtype=float), 0, 1)
    n_rows, n_columns = values.shape
    width = min(2.0 + 1.0 * n_columns, 30.0)
    figure, axes = plt.subplots(figsize=(width, 1.0 + 0.28 * n_rows))
    axes.imshow(0.05 + 0.9 * values, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for r in range(n_rows):
        for c in range(n_columns):
            _, color = shade(values[r, c], cmap)
            axes.text(c, r, cells[r][c], ha="center", va="center", fontsize=7, color=color)
    if split is not None:
        axes.axvline(split - 0.5, color="#333333", linewidth=2.5)
    axes.set_xticks(range(n_columns), column_labels, fontsize=8)
    axes.xaxis.tick_top()
    axes.set_yticks(range(n_rows), row_labels, fontsize=7)
    axes.set_ylabel(row_axis)
    axes.set_title(title, fontsize=9, pad=24)
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- JSON
# Writing a result file; reading one (checked against the result's fields) is
# lm_layers_explainer.saving, which imports the result classes.

NOT_SAVED = "not saved"
"""``field(metadata={NOT_SAVED: True})``: a field that is not data (the model, or the
``seconds`` a run took): it is not saved, and is None in a loaded result."""
FORMAT = "lm-layers-explainer result"
VERSION = 2
"""Version 1 files (lm_layers_explainer before issue 27) wrote HTML and plain dicts; they are
refused: save the result again."""
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")  # fmt: skip
"""The array dtypes a file may hold."""
RUN_SETTINGS = ("memory", "seconds")
"""``settings`` entries that describe the run (the free memory, the time taken): not saved."""
INT_RANGE = (-(2**63), 2**64)
"""The integers a file may hold (64 bits, signed or not)."""


def _encode(value, where: str):
    """``value`` as JSON data; ``where`` names it in errors."""
    if isinstance(value, Result):
        return to_data(value)
    if isinstance(value, np.ndarray):
        if value.dtype.name not in DTYPES:
            raise TypeError(
                f"{where}: cannot save an array of dtype {value.dtype}; a file holds {DTYPES}"
            )
        listed = value.tolist()
        if np.issubdtype(value.dtype, np.floating):
            listed = _map_floats(listed)
        return {"__ndarray__": listed, "dtype": value.dtype.name, "shape": list(value.shape)}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        if not INT_RANGE[0] <= int(value) < INT_RANGE[1]:
            raise TypeError(f"{where}: cannot save {value}, an integer beyond 64 bits")
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)  # JSON has no NaN or infinity: a number that is one is marked
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
        return {"__items__": [[_encode(k, where), _encode(v, where)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value):  # settings such as a memory fit: kept as a dict
        return _encode(dataclasses.asdict(value), where)
    raise TypeError(f"{where}: cannot save a {type(value).__name__} as JSON")


def _map_floats(listed):
    if isinstance(listed, list):
        return [_map_floats(v) for v in listed]
    if math.isnan(listed):
        return None
    if math.isinf(listed):
        return "Infinity" if listed > 0 else "-Infinity"
    return listed


def to_data(result) -> dict:
    """A result as JSON-ready data: ``{"__result__": kind, "fields": {...}}``."""
    data = result.saved_fields() if hasattr(result, "saved_fields") else None
    if data is None:
        if not dataclasses.is_dataclass(result):
            raise TypeError(f"{type(result).__name__} cannot be saved as JSON")
        data = {
            f.name: getattr(result, f.name)
            for f in dataclasses.fields(result)
            if not f.metadata.get(NOT_SAVED)
        }
    if isinstance(data.get("settings"), dict):
        data["settings"] = {k: v for k, v in data["settings"].items() if k not in RUN_SETTINGS}
    kind = data.pop("__kind__", type(result).__name__)
    fields = {name: _encode(value, f"{kind}.{name}") for name, value in data.items()}
    return {"__result__": kind, "fields": fields}


def dumps(result) -> str:
    """The JSON text of a result file. ``</`` is written ``<\\/`` (the same JSON), so the text
    can also sit inside an HTML script element."""
    document = {"format": FORMAT, "version": VERSION, "result": to_data(result)}
    text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("</", "<\\/")
