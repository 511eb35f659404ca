"""A pytest plugin: nbval compares outputs through tools/compare_outputs.py.

nbval compares a cell's sanitized outputs with its reference by ``!=`` on strings and has no
hook for a numeric tolerance. This plugin changes nothing else of nbval (its kernel, markers,
sanitize file and reports): each collected cell becomes a ``TolerantCell``, whose sanitized
strings compare as compare_outputs.difference says (text, tokens and integers exactly,
decimals and colours within the tolerance stated there). tests/conftest.py loads it; alone:
``pytest -p nbval_tolerance --nbval`` with tools/ on the path.
"""

from __future__ import annotations

from compare_outputs import difference
from nbval.plugin import IPyNbCell


class Tolerated(str):
    """A sanitized output string that equals another when they are the same result."""

    def __eq__(self, other):
        return isinstance(other, str) and difference(str(self), str(other)) is None

    def __ne__(self, other):
        return not self == other

    __hash__ = str.__hash__


class TolerantCell(IPyNbCell):
    def sanitize(self, s):
        s = super().sanitize(s)
        return Tolerated(s) if isinstance(s, str) else s

    def format_output_compare(self, key, left, right):
        # nbval calls this with (key, reference, output) when they differ
        problem = difference(str(right), str(left))
        self.comparison_traceback.append(f"first difference beyond tolerance: {problem}")
        super().format_output_compare(key, str(left), str(right))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if type(item) is IPyNbCell:
            item.__class__ = TolerantCell
