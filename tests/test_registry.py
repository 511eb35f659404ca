import inspect
import re

import pytest

from lm_layers_explainer import lm_layers_explainer
from lm_layers_explainer.registry import ENTRY_POINTS, ExplainerRegistry


def test_entry_points_map_every_name_to_its_docstring_summary():
    entry_points = lm_layers_explainer.entry_points
    assert list(entry_points) == list(ENTRY_POINTS)
    for name, summary in entry_points.items():
        first_line = inspect.getdoc(lm_layers_explainer[name]).splitlines()[0]
        assert summary == first_line and summary


def test_entry_points_print_one_aligned_line_each():
    text = repr(lm_layers_explainer.entry_points)
    lines = text.splitlines()
    assert len(lines) == len(ENTRY_POINTS)
    for line, name in zip(lines, ENTRY_POINTS, strict=True):
        assert line.startswith(name)
    html = lm_layers_explainer.entry_points._repr_html_()
    assert html.count("<tr>") == len(ENTRY_POINTS) + 1


def test_every_entry_point_is_a_callable_class():
    for name in lm_layers_explainer:
        assert inspect.isclass(lm_layers_explainer[name]), name
    assert len(lm_layers_explainer) == len(ENTRY_POINTS)
    assert "tokens" in lm_layers_explainer


def test_unknown_name_raises_key_error_listing_valid_names():
    with pytest.raises(KeyError) as error:
        lm_layers_explainer["tokenz"]
    message = str(error.value)
    assert "tokenz" in message
    for name in ENTRY_POINTS:
        assert name in message


def test_a_new_explainer_needs_only_one_table_line():
    registry = ExplainerRegistry({**ENTRY_POINTS, "extra": "collections:OrderedDict"})
    assert registry["extra"].__name__ == "OrderedDict"
    assert "extra" in registry.entry_points


OLDER_SHAPE = {  # explainers that an earlier version built with the model only
    "tokens": {},
    "rankings": {"generate": 1},
    "attention_head_view": {"layer": 1},
    "attention_model_view": {},
    "attention_neuron_view": {"layer": 1, "head": 1},
}


@pytest.mark.parametrize("name", list(OLDER_SHAPE))
def test_the_text_is_given_when_built_and_the_older_call_shape_gives_the_same(name):
    """registry.py's rule: model and text when built, what to show when called."""
    text, options = "The cat sat on the mat", OLDER_SHAPE[name]
    built = lm_layers_explainer[name]("tiny-gpt2", text)(**options)
    called = lm_layers_explainer[name]("tiny-gpt2")(text, **options)
    assert built.to_frame().equals(called.to_frame())
    random_ids = re.compile(r"bertviz-[0-9a-f]{32}")  # bertviz names its elements at random
    assert random_ids.sub("", built.to_html()) == random_ids.sub("", called.to_html())
    with pytest.raises(ValueError, match="was given when the explainer was built"):
        lm_layers_explainer[name]("tiny-gpt2", text)(text, **options)
    with pytest.raises(TypeError, match="text is missing|sentence_a is missing"):
        lm_layers_explainer[name]("tiny-gpt2")(**options)


@pytest.mark.parametrize("name", ["activations", "predictions", "attributions"])
def test_explainers_that_read_the_text_once_require_it_when_built(name):
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'text'"):
        lm_layers_explainer[name]("tiny-gpt2")
    with pytest.raises(TypeError, match="text must be a string"):
        lm_layers_explainer[name]("tiny-gpt2", None)
