"""The comparison of page outputs with their references (tools/compare_outputs.py): it lets
floating-point noise between processors through and still fails on a real change, alone and
inside nbval (tools/nbval_tolerance.py) and the book's outputs check."""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import compare_outputs
import nbformat
import pytest
from compare_outputs import difference, differences

import lm_layers_explainer.render as render

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# Seen between two processors or kernel sets (issue 26): each pair is the same result.
NOISE = [
    ("p = 0.771", "p = 0.772"),
    ("sum of scores 0.4439", "sum of scores 0.4438"),
    ("diff -0.000", "diff 0.000"),
    ('<td style="background:#faeae1">0.12</td>', '<td style="background:#f9ebe1">0.12</td>'),
    ('<span style="background:#8c564be8">I</span>', '<span style="background:#8c564be9">I</span>'),
    ("attention 0.2513, 0.0048", "attention 0.2514, 0.0047"),
    ("score -1.19e-07", "score 3.2e-08"),  # both zero within ABS_TOL
    ("M 72.35 41.2 L 80.01 41.2", "M 72.36 41.2 L 80.01 41.2"),  # an SVG path
    ("| layer 3 |  0.5 |", "| layer 3 |   0.5 |"),  # a table's column widths
    ("layer 3  -0.02  0.45", "layer 3 -0.02 0.45"),
]

# Real changes: each pair must be told apart.
CHANGES = {
    "a score changed by 1e-2 relative": ("p(' Paris') = 0.7802", "p(' Paris') = 0.7725"),
    "a small score changed by 1e-2 relative": ("score 0.004484", "score 0.00444"),
    "a changed token": ("top: ' London' 0.42", "top: ' Paris' 0.42"),
    "a changed label": ("predicted: orange (0.96)", "predicted: teal (0.96)"),
    "a reordered top-k": (
        "#1 ' Paris' 0.77, #2 ' the' 0.05, #3 ' a' 0.04",
        "#1 ' Paris' 0.77, #2 ' a' 0.05, #3 ' the' 0.04",
    ),
    "a changed sentence": (
        "London ranks above Manchester in every layer: False",
        "London ranks above Manchester in every layer: True",
    ),
    "a changed layer index": ("largest head L23H4", "largest head L23H1"),
    "a changed integer": ("rank 2 at layer 28", "rank 1 at layer 28"),
    "a changed colour": ('background:#faeae1"', 'background:#e1eafa"'),
    "a number more": ("0.1 0.2 0.3", "0.1 0.2"),
    "a sign flip beyond noise": ("logit difference -1.59", "logit difference 1.59"),
}


@pytest.mark.parametrize(("output", "reference"), NOISE)
def test_float_noise_is_the_same_result(output, reference):
    assert difference(output, reference) is None


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_real_change_fails(change):
    output, reference = CHANGES[change]
    assert difference(output, reference) is not None
    assert differences([output], [reference]), change


def test_the_tolerances_are_those_the_readme_states():
    readme = (TOOLS.parent / "README.md").read_text(encoding="utf-8")
    for name in ("REL_TOL", "ABS_TOL", "COLOUR_TOL"):
        value = getattr(compare_outputs, name)
        assert f"`{name} = {value:g}`" in readme, name


@pytest.mark.parametrize(
    "documented",
    [compare_outputs, render.signed, render.fixed, render.score],
    ids=lambda d: d.__name__.rsplit(".", 1)[-1],
)
def test_docstring_examples_hold(documented):
    tests = doctest.DocTestFinder().find(documented)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.tries and not runner.failures


def test_signed_zeros_and_noise_print_as_zero():
    assert render.signed(-0.004) == "0.00" and render.signed(-0.006) == "-0.01"
    assert render.fixed(-1e-9) == "0.00"
    assert render.score(-1.19e-07, 0.77) == "0" and render.score(0.0605, 0.77) == "0.0605"


def _notebook(path, source, stored_output):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source, execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored_output)]
    notebook.cells = [cell]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(notebook, path)


def test_nbval_uses_the_comparison(tmp_path):
    """nbval with the plugin: noise passes, a changed score and a changed token fail."""
    reference = "p(' Paris') = 0.7725\n"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    _notebook(tmp_path / "noise.ipynb", "print(\"p(' Paris') = 0.7726\")", reference)
    _notebook(tmp_path / "score.ipynb", "print(\"p(' Paris') = 0.7802\")", reference)
    _notebook(tmp_path / "token.ipynb", "print(\"p(' London') = 0.7725\")", reference)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval_tolerance", "--nbval", "--nbval-current-env",
         "-p", "no:cacheprovider", "-rA", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(TOOLS)},
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert "PASSED noise.ipynb" in report, report
    assert "FAILED score.ipynb" in report and "FAILED token.ipynb" in report, report
    assert "number 0.7802 where the reference has 0.7725" in report, report


def test_book_outputs_check_uses_the_comparison():
    sys.path.insert(0, str(TOOLS))
    from check_book_outputs import texts

    def cell(*pieces):
        stream = [{"output_type": "stream", "name": "stdout", "text": t} for t in pieces]
        return nbformat.from_dict({"outputs": stream})

    same = differences(texts(cell("p = 0.7726"), []), texts(cell("p = 0.7725"), []))
    changed = differences(texts(cell("p = 0.7802"), []), texts(cell("p = 0.7725"), []))
    assert not same and changed and "0.7802" in changed[0]
    # one print flushed in two pieces is the same output (as nbval joins them)
    assert not differences(texts(cell("p = 0.77", "25\n"), []), texts(cell("p = 0.7725\n"), []))


# ----------------------------------------------------------------- prose against outputs


def _page(prose, printed):
    """A page of one section: its prose, then a code cell that printed ``printed``."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(share)", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    notebook.cells = [nbformat.v4.new_markdown_cell(f"## Shares\n\n{prose}"), cell]
    return notebook


@pytest.mark.parametrize(
    ("prose", "printed", "agrees"),
    [
        ("86 % of the attribution lies on the square", "on the square 0.862", True),
        ("86 % of the attribution lies on the square", "on the square 0.79", False),  # issue 26
        ("a share of 0.66", "p = 0.6612", True),
        ("the minima are 0.78 and 0.31", "minima 0.79, 0.34", False),  # issue 26
        ("a difference of 1.59", "-1.59: heads -2.30", True),  # unsigned prose, either sign
        ("a difference of +1.59", "-1.59: heads -2.30", False),  # signed prose, its sign
        ("layer 23 and head 4, at 2 positions", "nothing", True),  # integers are not checked
        ("the formula's $0.5 A$ and `0.25`", "nothing", True),  # math and code are not
        ("a threshold of 0.5\n\n% not an output: 0.5 (a threshold)", "nothing", True),
    ],
)
def test_prose_numbers_must_be_printed_by_their_section(prose, printed, agrees):
    from check_prose_numbers import check_page

    page = _page(prose, printed)
    assert (check_page(page, page) == []) is agrees


def test_every_prose_number_of_the_book_is_in_its_references():
    """The same check `nox -s book` runs on its own execution of the pages."""
    from book_pages import REFERENCES
    from check_prose_numbers import check

    assert check(REFERENCES) == []
