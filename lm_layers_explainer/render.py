"""Shared rendering: self-contained, escaped HTML for notebooks and static figures for books.

Every explainer result derives from :class:`Result`: it shows itself in a notebook
(``_repr_html_``), exports a table (``to_frame``) and saves a picture (``save``).
"""

from __future__ import annotations

import html
from pathlib import Path

STATIC_SUFFIXES = (".png", ".svg", ".pdf")


def escape(text: str) -> str:
    """HTML-escape text, quotes included: every piece of model or user text goes through it."""
    return html.escape(str(text), quote=True)


def visible(token: str) -> str:
    """Show a token's whitespace: a leading space as '␣', newlines and tabs as escapes."""
    return token.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")


class Result:
    """Base class of explainer results.

    Subclasses implement :meth:`to_frame`, :meth:`to_html` and :meth:`figure`.
    """

    def to_frame(self):
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def figure(self):
        """A matplotlib figure of the result (the static picture the book shows)."""
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self.to_html()

    def static(self):
        """The static picture as an ``IPython.display.Image`` (PNG), for pages that must read
        well without JavaScript."""
        import io

        import matplotlib.pyplot as plt
        from IPython.display import Image

        figure = self.figure()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight", dpi=120)
        plt.close(figure)
        return Image(buffer.getvalue())

    def save(self, path) -> Path:
        """Save as ``.html`` (self-contained) or as a static ``.png``, ``.svg`` or ``.pdf``.

        >>> result.save("tokens.svg")
        PosixPath('tokens.svg')
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".html", ".htm"):
            path.write_text(self.to_html(), encoding="utf-8")
        elif suffix in STATIC_SUFFIXES:
            import matplotlib.pyplot as plt

            figure = self.figure()
            # A fixed date and software tag make saved SVG/PDF files reproducible.
            metadata = {"Date": None} if suffix in (".svg", ".pdf") else {}
            figure.savefig(path, bbox_inches="tight", dpi=150, metadata=metadata)
            plt.close(figure)
        else:
            raise ValueError(
                f"path must end in .html, {', '.join(STATIC_SUFFIXES)}; got {path.name!r}"
            )
        return path
