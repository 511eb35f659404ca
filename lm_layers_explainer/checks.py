"""One checker per kind of value, used by every explainer before any model work.

Each names the parameter and what is valid. A value of the wrong kind is a TypeError, a
value of the right kind out of range a ValueError. numpy scalars count as the Python kind
they hold (``np.int64(3)`` is an int); ``True`` is not an int.

>>> check_int(np.int64(3), "topk", 1, 10)
3
>>> check_int(0, "topk", 1, 10)
Traceback (most recent call last):
ValueError: topk must be in 1..10; got 0
"""

from __future__ import annotations

import math

import numpy as np

SEED_RANGE = (0, 2**32 - 1)


def is_int(value) -> bool:
    """An int or a numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def int_list(values, name: str, valid: str) -> list:
    """One int, or an iterable (not a string) of values, as a list; ``valid`` says which
    ints (``"in 0..5"``) in the TypeError. The items are for the caller to check."""
    if is_int(values):
        return [values]
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be an int or a list of ints {valid}; got {values!r}")
    return list(values)


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """An int in ``low..high`` (``>= low`` without ``high``)."""
    bound = f"in {low}..{high}" if high is not None else f">= {low}"
    if not is_int(value):
        raise TypeError(f"{name} must be an int {bound}; got {value!r}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {bound}; got {value}")
    return int(value)


def check_index(value, size: int, name: str) -> int:
    """An index in ``0..size-1`` (a layer, a head)."""
    return check_int(value, name, 0, size - 1)


def check_indices(values, size: int, name: str) -> list[int] | None:
    """None, or a non-empty list of indices in ``0..size-1`` (one int is accepted too)."""
    if values is None:
        return None
    values = int_list(values, name, f"in 0..{size - 1}")
    if not values:
        raise ValueError(f"{name} must list at least one index in 0..{size - 1}")
    return [check_index(v, size, name) for v in values]


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_number(value, name: str, low: float | None = None, *, above: bool = False) -> float:
    """A finite real number, at least ``low`` (or strictly above it with ``above``)."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(
        value, (bool, np.bool_)
    ):
        raise TypeError(f"{name} must be a number; got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if above else value < low)
    if not math.isfinite(value) or too_low:
        bound = "" if low is None else f" {'>' if above else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}; got {value}")
    return value


def check_seed(value, name: str = "seed") -> int:
    return check_int(value, name, *SEED_RANGE)


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_text(text, name: str = "text") -> str:
    """A string with something besides whitespace, that can be encoded as UTF-8 (see
    :func:`check_unicode`)."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string; got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} must contain something besides whitespace; got an empty text")
    return check_unicode(text, name)


def check_unicode(text: str, name: str) -> str:
    """A string that can be encoded as UTF-8: a lone surrogate, as from a bad decode,
    cannot (tokenizers refuse it with a TypeError). For any text a tokenizer reads: a
    text, a token text, a target."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} must be valid Unicode; character {error.start} is a lone surrogate "
            f"{text[error.start]!r} (decode bytes with errors='replace' to avoid this)"
        ) from None
    return text


def check_template(template, name: str) -> str:
    """A text with exactly one ``{}`` (what is put in) and no other format field; literal
    braces are written ``{{`` and ``}}``."""
    import string

    template = check_text(template, name)
    valid = f"{name} must hold exactly one {{}} (no other braces; write {{{{ or }}}} for one)"
    try:
        fields = [
            (field, spec, conversion)
            for _, field, spec, conversion in string.Formatter().parse(template)
            if field is not None
        ]
    except ValueError as error:  # a lone brace
        raise ValueError(f"{valid}; got {template!r}: {error}") from None
    if fields != [("", "", None)]:
        shown = ", ".join(
            f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            for field, spec, conversion in fields
        )
        raise ValueError(f"{valid}; got {template!r}, with {shown or 'none'}")
    return template


def check_finite(values, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Real numbers, none NaN or infinite, as a float64 array (of ``shape`` if given)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be real numbers; got {type(values).__name__}") from None
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise ValueError(
            f"{name} must be finite numbers; got {array.ravel()[bad[0]]} at index {int(bad[0])}"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}"
        )
    return array


def check_labels(values, n: int, name: str = "custom_labels") -> list[str]:
    """A list of ``n`` distinct, non-empty label names (one per class, in index order)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of {n} label names; got {values!r}")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} must name each of the model's {n} labels; got {len(values)}")
    for value in values:
        check_text(value, name)
    if len(set(values)) != n:
        repeated = sorted({v for v in values if values.count(v) > 1})
        raise ValueError(f"{name} must be distinct; {repeated} appear more than once")
    return values


def check_texts(texts, name: str = "texts", *, minimum: int, maximum: int) -> list[str]:
    """A list of ``minimum``..``maximum`` texts, each checked by :func:`check_text`."""
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"{name} must be a list of strings; got {type(texts).__name__}")
    texts = list(texts)
    if not minimum <= len(texts) <= maximum:
        raise ValueError(f"{name} must hold {minimum}..{maximum} texts; got {len(texts)}")
    return [check_text(text, f"{name}[{i}]") for i, text in enumerate(texts)]


def check_labels_per_text(labels, n: int, name: str = "labels") -> list[str] | None:
    """None, or one label (a string or an int, kept as its text) for each of ``n`` texts."""
    if labels is None:
        return None
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise TypeError(f"{name} must be a list of {n} labels, one per text; got {labels!r}")
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"{name} must give one label per text ({n}); got {len(labels)}")
    for i, label in enumerate(labels):
        if not isinstance(label, (str, int, np.integer)) or isinstance(label, bool):
            raise TypeError(f"{name}[{i}] must be a string or an int; got {label!r}")
    return [str(label) for label in labels]
