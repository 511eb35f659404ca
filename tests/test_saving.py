"""Every result kind saved as JSON and read back: the same data, tables, views and pictures;
files that are not result files, or name unknown kinds, are refused."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from lm_layers_explainer import lm_layers_explainer, load_result
from lm_layers_explainer.saving import result_classes


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
        pd.testing.assert_frame_equal(loaded.to_frame(), expected.to_frame(), obj=name)
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
            '{"format": "lm-layers-explainer result", "version": 1, '
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
