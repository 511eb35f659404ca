import inspect

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
