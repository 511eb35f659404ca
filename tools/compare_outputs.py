"""How a page's output is compared with its reference: the one place that says it.

Used by nbval (tests/conftest.py gives nbval's cells this comparison) and by
tools/check_book_outputs.py (the book build's own execution), so both judge alike.

A text output (a stream, text/plain, text/html, application/json) is cut into numbers,
colours and the text between them:

- the text between (words, tokens, labels, tags, order) must be equal, except that runs of
  spaces and tabs count as one space (a table's column widths follow its numbers);
- integers must be equal (layer indices, counts, ranks, token ids);
- decimal numbers (``0.7725``, ``-1.5e-07``, ``86.0``) are equal within
  ``max(ABS_TOL, REL_TOL * larger magnitude, one unit in the last printed digit)``.
  The last term lets a value that sits on a rounding boundary print either way
  (``0.771`` / ``0.772``); a real change of REL_TOL or more still fails once a number is
  printed with enough digits (4 significant digits print 1e-2 relative as 10 units);
- colours (``#faeae1``, ``#8c564be8``, ``rgb(250, 234, 225)``, ``rgba(..)``) are equal within
  COLOUR_TOL in every channel: they encode a value, and a value that moved within its
  tolerance may move its colour by a step.

The tolerances are those of floating-point noise between processors and kernels: the
pages' outputs recorded on one CPU were compared with those of the same pages run with
ATEN_CPU_CAPABILITY=default and MKL_CBWR=COMPATIBLE (README, "Reference outputs").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

REL_TOL = 2e-3
"""Relative tolerance of a decimal number: kernel noise, amplified through 30 layers, is
below 1e-4 relative on the pages; a changed result is more."""
ABS_TOL = 1e-6
"""Absolute tolerance of a decimal number: what is below it is zero within float32 noise."""
COLOUR_TOL = 3
"""Largest difference in one channel (0-255) between two colours that encode a value."""

_COLOUR = (
    r"#[0-9a-fA-F]{8}\b|#[0-9a-fA-F]{6}\b"  # #rrggbbaa, #rrggbb
    r"|rgba?\(\s*[\d.]+\s*,\s*[\d.]+\s*,\s*[\d.]+\s*(?:,\s*[\d.]+\s*)?\)"
)
# A number that stands alone: not part of a word or an identifier (L23H4, e1, x2 stay text).
# The minus may be ASCII or the typographic U+2212.
_NUMBER = r"(?<![\w.#])[-+\u2212]?(?:\d+\.\d+|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w])"
_PIECES = re.compile(rf"(?P<colour>{_COLOUR})|(?P<number>{_NUMBER})")
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Piece:
    kind: str  # "colour" or "number"
    text: str


def split(text: str) -> tuple[list[str], list[Piece]]:
    """The text between the numbers and colours (spaces collapsed), and those pieces.

    >>> split("p = 0.7725 at layer 3, colour #faeae1")
    (['p = ', ' at layer ', ', colour ', ''], [Piece(kind='number', text='0.7725'), \
Piece(kind='number', text='3'), Piece(kind='colour', text='#faeae1')])
    """
    between, pieces, start = [], [], 0
    for match in _PIECES.finditer(text):
        between.append(_SPACES.sub(" ", text[start : match.start()]))
        pieces.append(Piece(match.lastgroup, match.group()))
        start = match.end()
    between.append(_SPACES.sub(" ", text[start:]))
    return between, pieces


def value_of(number: str) -> float:
    """A printed number's value (the minus may be U+2212)."""
    return float(number.replace("\u2212", "-"))


def _last_digit(text: str) -> float:
    """One unit in the last printed digit: 0.001 for '0.771', 1e-08 for '6.0e-08'."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _is_integer(text: str) -> bool:
    return not re.search(r"[.eE]", text)


def numbers_agree(a: str, b: str) -> bool:
    """Two printed numbers are the same result (integers exactly, decimals within tolerance).

    >>> numbers_agree("0.771", "0.772"), numbers_agree("-0.000", "0.000")
    (True, True)
    >>> numbers_agree("0.4439", "0.4483"), numbers_agree("23", "24")
    (False, False)
    """
    if _is_integer(a) and _is_integer(b):
        return value_of(a) == value_of(b)
    x, y = value_of(a), value_of(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    allowed = max(ABS_TOL, REL_TOL * max(abs(x), abs(y)), _last_digit(a), _last_digit(b))
    return abs(x - y) <= allowed * (1 + 1e-9)


def _channels(colour: str) -> list[float]:
    if colour.startswith("#"):  # #rrggbb or #rrggbbaa
        return [int(colour[i : i + 2], 16) for i in range(1, len(colour), 2)]
    values = [float(v) for v in re.findall(r"[\d.]+", colour)]
    return values[:3] + [255 * v for v in values[3:]]  # alpha in 0..1, compared on 0..255


def colours_agree(a: str, b: str) -> bool:
    """Two colours are the same within COLOUR_TOL per channel.

    >>> colours_agree("#faeae1", "#f9ebe1"), colours_agree("#faeae1", "#e1eafa")
    (True, False)
    """
    x, y = _channels(a), _channels(b)
    return len(x) == len(y) and all(abs(p - q) <= COLOUR_TOL for p, q in zip(x, y, strict=True))


def _context(between: list[str], index: int) -> str:
    before = between[index][-40:] if index < len(between) else ""
    return before.replace("\n", "\\n")


def difference(output: str, reference: str) -> str | None:
    """None when ``output`` is the same result as ``reference``; else what differs first.

    >>> difference("score 0.7726 for ' Paris'", "score 0.7725 for ' Paris'") is None
    True
    >>> print(difference("score 0.7800 for Paris", "score 0.7725 for Paris"))
    number 0.7800 where the reference has 0.7725 (after 'score ')
    >>> print(difference("score 0.7725 for London", "score 0.7725 for Paris"))
    text ' for London' where the reference has ' for Paris'

    """
    ours, our_pieces = split(output)
    theirs, their_pieces = split(reference)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return f"text {a[:80]!r} where the reference has {b[:80]!r}"
        if index < min(len(our_pieces), len(their_pieces)):
            p, q = our_pieces[index], their_pieces[index]
            same = numbers_agree if p.kind == "number" else colours_agree
            agree = p.kind == q.kind and same(p.text, q.text)
            if not agree:
                return (
                    f"{q.kind} {p.text} where the reference has {q.text} "
                    f"(after {_context(theirs, index)!r})"
                )
    if len(our_pieces) != len(their_pieces):
        return f"{len(our_pieces)} numbers and colours where the reference has {len(their_pieces)}"
    return None


def differences(outputs: Iterable[str], references: Iterable[str]) -> list[str]:
    """What differs between two cells' compared texts, in order (empty when they agree)."""
    outputs, references = list(outputs), list(references)
    if len(outputs) != len(references):
        return [f"{len(outputs)} outputs where the reference has {len(references)}"]
    found = []
    for index, (a, b) in enumerate(zip(outputs, references, strict=True)):
        problem = difference(a, b)
        if problem:
            found.append(f"output {index}: {problem}")
    return found
