"""Results as JSON files: ``result.save("result.json")`` and :func:`load_result`.

>>> result = lm_layers_explainer["tokens"]("tiny-gpt2")("The cat sat")
>>> result.save("tokens.json")
>>> load_result("tokens.json").tokens                 # the same data, no model needed
['The', ' cat', ' sat']

A file holds one result's data: ``{"format", "version", "result"}``, the result being
``{"__result__": kind, "fields": {name: value}}``. Values are JSON numbers, strings, booleans,
null and lists; every other value is an object of one of these forms, and no other object
occurs, so no text (a label, a dict key) can be taken for a form:

- ``{"__dict__": {key: value}}``: a dict with text keys; ``{"__items__": [[key, value], ...]}``:
  any other dict;
- ``{"__tuple__": [...]}``: a tuple;
- ``{"__float__": "nan"}`` (or ``"inf"``, ``"-inf"``): a number JSON cannot write;
- ``{"__ndarray__": nested lists, "dtype": "float32", "shape": [...]}``: a numpy array of
  booleans, integers or floats (NaN written ``null``, infinities ``"Infinity"`` and
  ``"-Infinity"``);
- ``{"__result__": kind, "fields": {...}}``: a result inside another.

Loading reads data only: it checks every field against the result class's annotations
(types, dtypes, shapes, nesting), builds no object but the known result classes, numbers,
texts, lists, dicts and numeric arrays, and runs no code from the file. Views are drawn anew
from the data (a file holds no HTML). What ties a result to a loaded model (the attributions'
question) and what describes the run rather than the result (:data:`RUN_SETTINGS`, the
``seconds`` a method took) are not saved: the same result saves to the same bytes in every
process, and a loaded one shows, tables and draws itself as the saved one did (its run times
None).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import reprlib
import types
import typing
from pathlib import Path

import numpy as np

from .render import (  # noqa: F401 (to_data and dumps: the writing half, kept importable here)
    DTYPES,
    FORMAT,
    INT_RANGE,
    NOT_SAVED,
    VERSION,
    Result,
    dumps,
    to_data,
)

MAX_DEPTH = 32
"""How deeply values may nest in a file (an array counts once, whatever its dimensions)."""
_FORMS = ("__dict__", "__items__", "__tuple__", "__float__", "__ndarray__", "__result__")


class _Malformed(ValueError):
    """A problem with a file's content; :func:`load_result` adds the file's name."""


# --------------------------------------------------------------------------- reading


def result_classes() -> dict[str, type]:
    """Every result class by name: the kinds a file may name. They are found from the
    registry: every explainer's module is imported, and every dataclass deriving from
    :class:`~lm_layers_explainer.render.Result` that is then defined counts, so a new
    explainer (one registry line) saves and loads its results with no edit here."""
    from .registry import lm_layers_explainer

    for name in lm_layers_explainer:
        lm_layers_explainer[name]  # imports the explainer's module, and its results
    found, pending = {}, [Result]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if dataclasses.is_dataclass(sub):
                found[sub.__name__] = sub
            pending.append(sub)
    return found


def load_result(path):
    """The result saved in a JSON file by ``result.save("....json")``. A file that is not
    one, or holds anything a result cannot, is refused with a ValueError naming the file
    and the field.

    >>> load_result("attributions.json").to_frame()
    """
    path = Path(path)
    content = path.read_bytes()
    try:
        return _load(content)
    except _Malformed as error:
        raise ValueError(f"result file {str(path)!r}: {error}") from None


def _load(content: bytes):
    try:
        document = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Malformed(
            "not UTF-8 text (binary, or UTF-16?): a result file is UTF-8 JSON"
        ) from None
    except RecursionError:
        raise _Malformed(f"nests too deeply: values nest at most {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise _Malformed(f"not a JSON result file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _Malformed(f"not a result file of lm_layers_explainer ('format' must be {FORMAT!r})")
    if document.get("version") != VERSION:
        raise _Malformed(
            f"a version {document.get('version')!r} result file; this lm_layers_explainer "
            f"reads version {VERSION} (compute and save the result again)"
        )
    if set(document) != {"format", "version", "result"}:
        raise _Malformed(f"must hold 'format', 'version' and 'result'; got {sorted(document)}")
    return from_data(document["result"])


def from_data(data, where: str = "result", depth: int = 0):
    """The result that :func:`to_data` described, every field checked against the result
    class's annotations; a ValueError names what ``where`` holds that a result cannot."""
    if not isinstance(data, dict) or set(data) != {"__result__", "fields"}:
        raise _Malformed(
            f"{where} must be an object {{'__result__': kind, 'fields': {{...}}}}; got {_got(data)}"
        )
    classes, kind = result_classes(), data["__result__"]
    if not isinstance(kind, str) or kind not in classes:
        raise _Malformed(
            f"{where}: unknown result kind {kind!r}; a file may hold one of: "
            f"{', '.join(sorted(classes))}"
        )
    cls, fields = classes[kind], data["fields"]
    if not isinstance(fields, dict):
        raise _Malformed(f"{where}.fields must be an object of {kind}'s fields; got {_got(fields)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    saved = {name: f for name, f in known.items() if not f.metadata.get(NOT_SAVED)}
    unknown = sorted(set(fields) - set(saved))
    missing = [
        name for name, f in saved.items()
        if name not in fields
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]  # fmt: skip
    if unknown or missing:
        problem = f"has no fields {unknown}" if unknown else f"lacks the fields {missing}"
        raise _Malformed(f"{where}: {kind} {problem}; its fields are {sorted(saved)}")
    values, prefix = {}, kind if depth == 0 else where  # "ComparisonResult.results['lime']"
    for name, value in fields.items():
        values[name] = _decode(value, f"{prefix}.{name}", depth + 1)
        _check(values[name], hints[name], f"{prefix}.{name}")
    not_saved = {name: None for name in known if name not in saved}
    try:
        return cls(**values, **not_saved)
    except (TypeError, ValueError) as error:
        raise _Malformed(f"{where}: not a valid {kind}: {error}") from None


def _decode(value, where: str, depth: int):
    """A value read from a file as Python data (see the forms in the module's docstring)."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"{where} nests too deeply: values nest at most {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise _Malformed(f"{where}: {value} is not a JSON number (too large, or NaN/Infinity)")
    if type(value) is int and not INT_RANGE[0] <= value < INT_RANGE[1]:
        raise _Malformed(f"{where}: {value} overflows 64-bit integers")
    if not isinstance(value, dict):
        return value
    if set(value) == {"__ndarray__", "dtype", "shape"}:
        return _array(value, where)
    if set(value) == {"__result__", "fields"}:
        return from_data(value, where, depth)
    form, content = next(iter(value.items())) if len(value) == 1 else (None, None)
    if form not in _FORMS[:4]:  # the forms of one key
        raise _Malformed(
            f"{where} is an object with keys {sorted(value)[:5]}, not one of the forms of a "
            f"result file ({', '.join(_FORMS)})"
        )
    if form == "__float__":
        if content not in ("nan", "inf", "-inf"):
            raise _Malformed(
                f"{where}: '__float__' must be 'nan', 'inf' or '-inf'; got {_got(content)}"
            )
        return float(content)
    if form == "__dict__" and isinstance(content, dict):
        return {k: _decode(v, f"{where}[{k!r}]", depth + 1) for k, v in content.items()}
    if form == "__tuple__" and isinstance(content, list):
        return tuple(_decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(content))
    if form == "__items__" and isinstance(content, list):
        return _items(content, where, depth)
    shape = "an object" if form == "__dict__" else "a list"
    raise _Malformed(f"{where}: {form!r} must hold {shape}; got {_got(content)}")


def _items(pairs: list, where: str, depth: int) -> dict:
    """A dict from its ``[key, value]`` pairs."""
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
        raise _Malformed(f"{where}: '__items__' must be a list of [key, value] pairs")
    items = {}
    for i, (key, value) in enumerate(pairs):
        key = _decode(key, f"{where} key {i}", depth + 1)
        try:
            hash(key)
        except TypeError:
            raise _Malformed(
                f"{where}: key {i} is a {type(key).__name__}, not a dict key"
            ) from None
        items[key] = _decode(value, f"{where}[{key!r}]", depth + 1)
    return items


def _array(value: dict, where: str) -> np.ndarray:
    """A numeric array from its nested lists, checked against its dtype and shape."""
    dtype, shape, listed = value["dtype"], value["shape"], value["__ndarray__"]
    if dtype not in DTYPES:
        raise _Malformed(f"{where}: dtype {dtype!r} is not one a file holds: {', '.join(DTYPES)}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DEPTH
        or not all(type(n) is int and 0 <= n < 2**40 for n in shape)
    ):
        raise _Malformed(
            f"{where}: shape must be a list of at most {MAX_DEPTH} sizes; got {_got(shape)}"
        )
    leaves = [listed]
    for n in shape:  # level by level: no recursion, however deep the lists
        if not all(isinstance(x, list) and len(x) == n for x in leaves):
            raise _Malformed(f"{where}: the nested lists are not of shape {shape}")
        leaves = [y for x in leaves for y in x]
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.floating):
        special = {None: math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        try:
            numbers = np.array(
                [x if type(x) in (int, float) else special[x] for x in leaves], dtype=np.float64
            )
        except (KeyError, TypeError, OverflowError):
            raise _Malformed(
                f"{where}: a {dtype} array holds numbers, null, 'Infinity' and '-Infinity' only"
            ) from None
        with np.errstate(over="ignore"):
            array = numbers.astype(dtype)
        if any(type(leaves[i]) is not str and leaves[i] is not None
               for i in np.flatnonzero(~np.isfinite(array))):  # fmt: skip
            raise _Malformed(f"{where}: a value overflows {dtype}, or is NaN/Infinity unmarked")
        return array.reshape(shape)
    wanted = bool if dtype == np.bool_ else int
    if not all(type(x) is wanted for x in leaves):
        raise _Malformed(f"{where}: a {dtype} array holds {wanted.__name__}s only")
    if wanted is int and leaves:
        info = np.iinfo(dtype)
        if min(leaves) < info.min or max(leaves) > info.max:
            raise _Malformed(f"{where}: a value overflows {dtype} ({info.min}..{info.max})")
    return np.array(leaves, dtype=dtype).reshape(shape)


def _check(value, hint, where: str) -> None:
    """A ValueError unless ``value`` is of the annotated type ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (typing.Any, object):
        return
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg, where)
            except _Malformed:
                pass
    elif hint is float:
        if type(value) in (int, float):
            return
    elif hint in (int, bool, str, type(None)):
        if type(value) is hint:
            return
    elif origin in (list, dict, tuple) or hint in (list, dict, tuple):
        if isinstance(value, origin or hint):
            if origin is list:
                for i, item in enumerate(value):
                    _check(item, args[0], f"{where}[{i}]")
            elif origin is dict:
                for key, item in value.items():
                    _check(key, args[0], f"{where} key {key!r}")
                    _check(item, args[1], f"{where}[{key!r}]")
            return
    elif isinstance(hint, type) and isinstance(value, hint):
        return
    raise _Malformed(f"{where} must be {_named(hint)}; got {_got(value)}")


def _named(hint) -> str:
    """A type annotation as people write it: ``list[str] | None``."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return "None" if hint is type(None) else hint.__name__
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", str(hint)).replace("NoneType", "None")


def _got(value) -> str:
    """A value's type and a short repr, for errors."""
    return f"{type(value).__name__} {reprlib.repr(value)}"
