"""Every result kind saved as JSON and read back: the same data, tables, views and pictures;
files that are not result files, or hold anything a result cannot, are refused with one
clear error; a file holds no markup; the same result saves to the same bytes anywhere."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from lm_layers_explainer import lm_layers_explainer, load_result
from lm_layers_explainer._bertviz import RESIZE, inline_script
from lm_layers_explainer.attributions.images import ImageAttributionResult
from lm_layers_explainer.saving import VERSION, result_classes
from lm_layers_explainer.tokens import TokensResult

MARKERS = ["__float__", "__result__", "__items__", "__tuple__", "__ndarray__", "__dict__"]


def _without_ids(markup: str) -> str:
    """HTML with the views' random element ids replaced (each rendering draws new ones)."""
    return re.sub(r"(bertviz|lmle)-[0-9a-f-]{32,36}", r"\1-ID", markup)


def _round_trip(result, path):
    result.save(path)
    return load_result(path)


def test_every_result_kind_comes_back_equal(tmp_path, explain_everything):
    results = explain_everything("<script>alert(1)</script> the cat sat")
    attribution = results["attributions"]
    results["faithfulness"] = attribution.faithfulness()
    results["rankings_output"] = lm_layers_explainer["rankings"]("tiny-gpt2")("the cat sat")
    seen = set()
    for name, result in results.items():
        loaded = _round_trip(result, tmp_path / f"{name}.json")
        expected = result.token_view() if name == "rankings_output" else result
        assert type(loaded) is type(expected), name
        seen.add(type(loaded).__name__)
        frames = [r.to_frame().drop(columns="seconds", errors="ignore") for r in (loaded, expected)]
        pd.testing.assert_frame_equal(*frames, obj=name)  # run times are not saved
        assert _without_ids(loaded.to_html()) == _without_ids(expected.to_html()), name
        assert repr(loaded) == repr(expected), name
        assert loaded.save(tmp_path / f"{name}.png").stat().st_size > 1000
    assert seen >= set(result_classes()) - {"RankingsOutput"}  # every kind that saves itself


def test_arrays_keep_dtype_shape_and_non_finite_values(tmp_path):
    result = lm_layers_explainer["attention_head_view"]("tiny-bart")("the cat", "a dog")
    result.attentions["cross"][0, 0, 0, :2] = [np.nan, np.inf]
    loaded = _round_trip(result, tmp_path / "bart.json")
    for kind, weights in result.attentions.items():
        assert loaded.attentions[kind].dtype == weights.dtype
        np.testing.assert_array_equal(loaded.attentions[kind], weights)  # NaN equals NaN here


def test_single_numbers_keep_nan_and_infinities(tmp_path):
    result = lm_layers_explainer["attributions"]("tiny-gpt2", "the cat sat")(method="saliency")
    result.delta, result.baseline_output, result.output = float("inf"), float("-inf"), np.nan
    loaded = _round_trip(result, tmp_path / "a.json")
    assert loaded.delta == float("inf") and loaded.baseline_output == float("-inf")
    assert isinstance(loaded.output, float) and np.isnan(loaded.output)


def test_a_loaded_attribution_keeps_its_faithfulness_and_says_what_needs_the_model(tmp_path):
    attribution = lm_layers_explainer["attributions"]("tiny-gpt2", "the cat sat on the")(
        method="feature_ablation"
    )
    saved = attribution.faithfulness()
    loaded = _round_trip(attribution, tmp_path / "a.json")
    assert loaded.explained is None
    assert loaded.faithfulness().summary() == saved.summary()
    with pytest.raises(ValueError, match="loaded from a file and keeps no model"):
        loaded.faithfulness("replacement")


def test_json_text_cannot_close_a_script_and_parses_to_the_same_text(tmp_path):
    text = "</script><script>alert(1)</script> the cat"
    result = lm_layers_explainer["tokens"]("tiny-gpt2")(text)
    path = result.save(tmp_path / "tokens.json")
    written = path.read_text(encoding="utf-8")
    assert "</" not in written
    assert json.loads(written)["result"]["fields"]["text"] == text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON result file"),
        ('{"format": "something else"}', "not a result file of lm_layers_explainer"),
        ('{"format": "lm-layers-explainer result", "version": 99}', "version 99"),
        (
            '{"format": "lm-layers-explainer result", "version": 2, '
            '"result": {"__result__": "os.system", "fields": {}}}',
            "unknown result kind 'os.system'",
        ),
    ],
)
def test_files_that_are_not_result_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_result(path)


# --------------------------------------------------------------------------- crafted files


class _Markup(HTMLParser):
    """Elements of an HTML document, and the documents of its iframes (srcdoc)."""

    def __init__(self, markup: str):
        super().__init__()
        self.elements, self.frames = [], []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "iframe":
            self.frames.append(dict(attrs).get("srcdoc", ""))  # unescaped by the parser


def _saved(result, path) -> dict:
    result.save(path)
    return json.loads(path.read_text(encoding="utf-8"))


def _write(path, document) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


@pytest.mark.parametrize("entry", ["attention_head_view", "attention_neuron_view"])
def test_a_crafted_file_puts_no_script_or_handler_outside_the_sandbox(tmp_path, entry):
    view = lm_layers_explainer[entry]("tiny-gpt2")("the cat sat")
    path = tmp_path / "view.json"
    document = _saved(view, path)
    fields = document["result"]["fields"]
    hostile = '"></iframe><script>alert(1)</script><img src=x onerror=alert(1)>'
    fields["html"] = hostile  # version 1 files held the view's HTML: now refused
    _write(path, document)
    with pytest.raises(ValueError, match=r"view\.json.*has no fields \['html'\]"):
        load_result(path)
    del fields["html"]
    fields["model_name"], fields["tokens"] = hostile, [hostile] * len(fields["tokens"])
    _write(path, document)
    loaded = load_result(path)
    for markup in (loaded._repr_html_(), loaded.save(tmp_path / "view.html").read_text()):
        outer = _Markup(markup)
        assert [tag for tag, _ in outer.elements] == ["iframe", "script", "noscript", "img"]
        assert outer.elements[0][1]["sandbox"] == "allow-scripts"
        assert markup.count("<script") == markup.count(inline_script(RESIZE)) == 1
        (frame,) = outer.frames
        for tag, attrs in outer.elements + _Markup(frame).elements:
            assert not any(name.startswith("on") for name in attrs), (tag, attrs)
            assert tag != "img" or attrs["src"].startswith("data:image/png;base64,")
    fields["view"] = "<script>"
    _write(path, document)
    with pytest.raises(ValueError, match="not a valid AttentionResult: .*view must be one of"):
        load_result(path)


def test_labels_equal_to_the_markers_come_back_as_they_were(tmp_path):
    """Dict keys, texts and labels spelled like the file's forms stay what they are."""
    image = _image_result()
    image.target = "__float__"
    image.top_labels = {marker: 0.5 for marker in MARKERS}  # a custom label named __float__
    image.settings = {
        **{marker: marker for marker in MARKERS},
        "nested": {marker: [marker, {marker: (marker,)}] for marker in MARKERS},
        1: "__items__",
        ("__tuple__", 2): ["__ndarray__"],
    }
    loaded = _round_trip(image, tmp_path / "image.json")
    assert loaded.target == "__float__"
    assert loaded.top_labels == image.top_labels and loaded.settings == image.settings
    tokens = TokensResult(MARKERS[0], MARKERS, list(range(6)), [False] * 6, "__result__")
    loaded = _round_trip(tokens, tmp_path / "tokens.json")
    assert (loaded.text, loaded.tokens, loaded.model_name) == ("__float__", MARKERS, "__result__")


def _image_result() -> ImageAttributionResult:
    """A small result built without a model."""
    return ImageAttributionResult(
        model_name="m", method="saliency", target="cat", target_index=0, output="probability",
        value=0.5, baseline_value=0.25, delta=None, image=np.zeros((2, 3, 3), np.uint8),
        scores=np.zeros((2, 3), np.float32), patch_size=1, signal="gradient",
        settings={"n_steps": 4}, top_labels={"cat": 0.5},
    )  # fmt: skip


def _fields(document):
    return document["result"]["fields"]


def _literal(document, field: str, text: str) -> str:
    """The document's JSON text with ``text`` written as the field's value."""
    _fields(document)[field] = "@literal@"
    return json.dumps(document).replace('"@literal@"', text)


def _nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


# (what is wrong, the change to a good file's document or its text, the error's words:
# "\.field" for a field of the ImageAttributionResult)
MALFORMED = [
    ("binary", lambda d: b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8 text"),
    ("UTF-16", lambda d: json.dumps(d).encode("utf-16"), "not UTF-8 text"),
    ("not JSON", lambda d: b"{'format': 1}", "not a JSON result file"),
    ("a list", lambda d: [d], "not a result file of lm_layers_explainer"),
    ("version 1", lambda d: d.update(version=1), f"a version 1 result file; .* {VERSION}"),
    ("result", lambda d: d.update(result=5), "result must be an object .*; got int 5"),
    ("fields", lambda d: d["result"].update(fields=[]), "result.fields must be an object"),
    ("extra field", lambda d: _fields(d).update(html="<b>"), r"result: \w+ has no fields"),
    ("missing field", lambda d: _fields(d).pop("scores") and None, r"result: \w+ lacks the"),
    ("str", lambda d: _fields(d).update(target=5), r"\.target must be str; got int 5"),
    ("int", lambda d: _fields(d).update(target_index="0"), r"\.target_index must be int"),
    ("bool int", lambda d: _fields(d).update(patch_size=True), r"\.patch_size must be int"),
    ("__float__", lambda d: _fields(d).update(value={"__float__": 5}), r"\.value: '__float__'"),
    ("__float__ text", lambda d: _fields(d).update(value={"__float__": "1e9"}), r"\.value: "),
    ("__items__", lambda d: _fields(d).update(top_labels={"__items__": 5}), r"\.top_labels: "),
    ("__items__ pairs", lambda d: _fields(d).update(top_labels={"__items__": [[1]]}),
     r"\.top_labels: '__items__' must be a list of \[key, value\] pairs"),
    ("__items__ key", lambda d: _fields(d).update(top_labels={"__items__": [[[1], 2]]}),
     r"\.top_labels: key 0 is a list"),
    ("__dict__", lambda d: _fields(d).update(settings={"__dict__": [1]}), r"\.settings: "),
    ("unknown form", lambda d: _fields(d).update(settings={"n_steps": 4}),
     r"\.settings is an object with keys \['n_steps'\], not one of the forms"),
    ("dtype", lambda d: _fields(d)["scores"].update(dtype="complex64"),
     r"\.scores: dtype 'complex64' is not one"),
    ("shape", lambda d: _fields(d)["scores"].update(shape=[3, 2]), r"\.scores: .* shape \[3, 2\]"),
    ("element", lambda d: _fields(d)["scores"]["__ndarray__"][0].__setitem__(0, "1"),
     r"\.scores: a float32 array holds numbers"),
    ("float32 overflow", lambda d: _fields(d)["scores"]["__ndarray__"][0].__setitem__(0, 1e300),
     r"\.scores: a value overflows float32"),
    ("uint8 overflow", lambda d: _fields(d)["image"]["__ndarray__"][0][0].__setitem__(0, 300),
     r"\.image: a value overflows uint8"),
    ("int64 overflow", lambda d: _fields(d).update(target_index=2**70),
     r"\.target_index: \d+ overflows 64-bit integers"),
    ("float overflow", lambda d: _literal(d, "value", "1e999"), r"\.value: inf is not a JSON"),
    ("NaN", lambda d: _literal(d, "value", "NaN"), r"\.value: nan is not a JSON number"),
    ("too deep", lambda d: _fields(d).update(settings={"__dict__": {"a": _nested(40)}}),
     r"\.settings\['a'\]\[0\].* nests too deeply"),
    ("far too deep", lambda d: _literal(d, "settings", "[" * 100_000 + "]" * 100_000),
     "nests too deeply"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_file_gets_one_error_naming_the_file_and_field(tmp_path, change, message):
    path = tmp_path / "bad.json"
    document = _saved(_image_result(), path)
    assert load_result(path).target == "cat"
    changed = change(document)
    content = document if changed is None else changed
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    message = "ImageAttributionResult" + message if message.startswith("\\.") else message
    where = f"^result file '{re.escape(str(path))}': {message}"
    with pytest.raises(ValueError, match=where) as info:
        load_result(path)
    assert info.value.__suppress_context__ and info.traceback[-1].name == "load_result"


@pytest.mark.parametrize(
    "dtype", ["object", "O", "datetime64[ns]", "timedelta64", "<U5", "str", "S3", "V8"]
)
def test_only_numeric_and_boolean_dtypes_load(tmp_path, dtype):
    path = tmp_path / "image.json"
    document = _saved(_image_result(), path)
    _fields(document)["scores"].update(dtype=dtype)
    _write(path, document)
    with pytest.raises(ValueError, match=f"Result.scores: dtype '{re.escape(dtype)}' is not"):
        load_result(path)
    unsaveable = _image_result()
    unsaveable.scores = np.array(["a"])
    with pytest.raises(TypeError, match="scores: cannot save an array of dtype <U1"):
        unsaveable.save(path)


NEW_EXPLAINER = '''
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lm_layers_explainer.render import Result, escape


@dataclass
class CountsResult(Result):
    words: list[str]
    counts: np.ndarray

    def to_frame(self):
        return pd.DataFrame({"word": self.words, "count": self.counts})

    def to_html(self):
        return "<ul>" + "".join(f"<li>{escape(w)}</li>" for w in self.words) + "</ul>"


class CountsExplainer:
    """Counts each word (a toy explainer, in its own module)."""

    def __init__(self, text):
        self.words = text.split()

    def __call__(self):
        return CountsResult(self.words, np.array([len(w) for w in self.words]))
'''


def test_a_new_explainers_results_load_in_a_fresh_process_from_its_registry_line(tmp_path):
    """A new explainer is one module and one registry line: its saved results load in a
    process that never imported that module, with no edit to saving."""
    import subprocess
    import sys

    (tmp_path / "counts_explainer.py").write_text(NEW_EXPLAINER)
    register = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from lm_layers_explainer import lm_layers_explainer as E, load_result\n"
        "E._targets['word_counts'] = 'counts_explainer:CountsExplainer'\n"
    )
    save = register + "E['word_counts']('the <b>cat</b> sat')().save(sys.argv[2])\n"
    load = register + (
        "r = load_result(sys.argv[2])\n"
        "assert 'counts_explainer' in type(r).__module__\n"
        "print(type(r).__name__, r.words, r.counts.tolist())\n"
    )
    path = tmp_path / "counts.json"
    for code in (save, load):
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(path)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["CountsResult", "['the',", "'<b>cat</b>',", "'sat']",
                                  "[3,", "10,", "3]"]  # fmt: skip
