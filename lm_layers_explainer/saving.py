"""Results as JSON files: ``result.save("result.json")`` and :func:`load_result`.

>>> result = lm_layers_explainer["tokens"]("tiny-gpt2")("The cat sat")
>>> result.save("tokens.json")
>>> load_result("tokens.json").tokens                 # the same data, no model needed
['The', ' cat', ' sat']

A file holds one result's data: its kind (the class name), and its fields, with numpy
arrays as nested lists and their dtype. What ties a result to a loaded model (the
attributions' question, which recomputes faithfulness) is not saved; a loaded result shows,
tables and draws itself as the saved one did, and what needs the model says so. Loading reads
data only: it creates no object but the known result classes, numbers, texts, lists and
dicts, and runs no code from the file. JSON has no NaN or infinite numbers: inside an
array's list they are written ``null``, ``"Infinity"`` and ``"-Infinity"``; a single number
that is one is written ``{"__float__": "nan"}`` (or ``"inf"``, ``"-inf"``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .render import FORMAT, NOT_SAVED, VERSION


def result_classes() -> dict[str, type]:
    """Every result class by name: the kinds a file may name."""
    from . import activations, attention, attention_flow, predictions, rankings, tokens  # noqa: F401
    from .attributions import images, layers, results  # noqa: F401
    from .components import logit_attribution, patching  # noqa: F401
    from .render import Result
    from .representations import embeddings, similarity  # noqa: F401

    found, pending = {}, [Result]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__result__" in value:
        return from_data(value)
    if "__ndarray__" in value:
        listed = _unmap_floats(value["__ndarray__"])
        array = np.array(listed, dtype=np.dtype(value["dtype"]))
        return array.reshape(value["shape"])
    if "__float__" in value:
        return float(value["__float__"])  # 'nan', 'inf' or '-inf': float() reads exactly these
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__items__" in value:
        return {_hashable(_decode(k)): _decode(v) for k, v in value["__items__"]}
    return {k: _decode(v) for k, v in value.items()}


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _unmap_floats(listed):
    if isinstance(listed, list):
        return [_unmap_floats(v) for v in listed]
    if listed is None:
        return math.nan
    if listed == "Infinity":
        return math.inf
    if listed == "-Infinity":
        return -math.inf
    return listed


def from_data(data: dict):
    """The result that :func:`to_data` described."""
    classes = result_classes()
    kind = data.get("__result__")
    if kind not in classes:
        raise ValueError(
            f"unknown result kind {kind!r}; a file may hold one of: {', '.join(sorted(classes))}"
        )
    cls = classes[kind]
    fields = {name: _decode(value) for name, value in data["fields"].items()}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"a {kind} has no fields {unknown}")
    missing = {n: None for n, f in known.items() if f.metadata.get(NOT_SAVED)}
    return cls(**fields, **missing)


def load_result(path):
    """The result saved in a JSON file by ``result.save("....json")``.

    >>> load_result("attributions.json").to_frame()
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"path {str(path)!r} is not a JSON result file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(
            f"path {str(path)!r} is not a result file of lm_layers_explainer (its 'format' "
            f"must be {FORMAT!r})"
        )
    if document.get("version") != VERSION:
        raise ValueError(
            f"path {str(path)!r} is a version {document.get('version')!r} result file; this "
            f"lm_layers_explainer reads version {VERSION}"
        )
    return from_data(document["result"])
