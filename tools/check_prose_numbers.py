"""Every number a page's prose states is one its outputs print (run by `nox -s book`).

    python tools/check_prose_numbers.py book/_build/.jupyter_cache   # the build's execution
    python tools/check_prose_numbers.py tests/notebooks              # the references

A page's prose says "86 % of the attribution lies on the square" about an output above or
below it. When the output moves (a new model, another processor) and the prose does not, a
reader sees text that contradicts the page. This check reads every decimal number and
percentage in a section's prose (the text between two headings) and requires that one of the
numbers printed by that section's code cells round to it: prose ``0.66`` matches an output
``0.6612``, prose ``86 %`` an output ``0.862`` or ``86.2``, within the tolerance of
tools/compare_outputs.py. An unsigned prose number may match a negative output ("a difference
of 1.59" for ``-1.59``); a signed one must match its sign.

Not checked: integers (layer and head indices, counts, token positions: a claim about them is
an ``assert`` in the page's code), and numbers in math, in inline code, in a role's or a
directive's argument, and in a code cell. A number in prose that no output prints (a formula's
constant, a threshold from a paper) is listed, with where it comes from, in a comment line
in its section: ``% not an output: 0.5, 10 % (ERASER's thresholds)``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from book_pages import NOT_EXECUTED, executed_pages, report
from compare_outputs import ABS_TOL, REL_TOL, split, value_of

_NOT_AN_OUTPUT = re.compile(r"^%\s*not an output:(.*)$", re.M)
# Prose numbers: decimals and percentages, the minus ASCII or U+2212, an optional plus sign.
_PROSE = re.compile(r"(?<![\w.\u2212+-])([-+\u2212]?)(\d+\.\d+|\d+)(\s?%)?(?![\w.]\d|\w)")
_HIDDEN = [
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$[^$\n]+\$"),  # inline math
    re.compile(r"`[^`\n]*`"),  # inline code, and role arguments ({cite}`...`)
    re.compile(r"^```.*?^```", re.S | re.M),  # directives
    re.compile(r"^%.*$", re.M),  # comments
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"<[^>\n]+>"),  # inline HTML tags and their attributes
    re.compile(r"^\|[-:| ]+\|$", re.M),  # table rules
]


def prose_numbers(markdown: str) -> list[tuple[str, float, float, bool]]:
    """(as written, value, half a unit of its last digit, signed) of each checked number.

    >>> [n[:3] for n in prose_numbers("p = 0.66 at layer 23, 86 % of it, $0.5 A$")]
    [('0.66', 0.66, 0.005), ('86 %', 0.86, 0.005)]
    """
    for pattern in _HIDDEN:
        markdown = pattern.sub(" ", markdown)
    found = []
    for match in _PROSE.finditer(markdown):
        sign, digits, percent = match.groups()
        if "." not in digits and not percent:
            continue  # an integer: an index or a count
        decimals = len(digits.partition(".")[2])
        value = float(digits) * (-1 if sign in ("-", "\u2212") else 1)
        half = 0.5 * 10.0**-decimals
        if percent:
            value, half = value / 100, half / 100
        found.append((match.group().strip(), value, half, bool(sign)))
    return found


def output_numbers(cells) -> list[float]:
    numbers = []
    for cell in cells:
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] if output.get("output_type") == "stream" else []
            data = output.get("data", {})
            texts += [str(data[k]) for k in ("text/plain", "text/html") if k in data]
            for text in texts:
                numbers += [value_of(p.text) for p in split(text)[1] if p.kind == "number"]
    return numbers


def _agrees(value: float, half: float, signed: bool, printed: float) -> bool:
    candidates = [printed, printed * 100, printed / 100]  # a share printed as 0.86 or 86
    if not signed:
        candidates += [-c for c in candidates]
    for candidate in candidates:
        allowed = half + max(ABS_TOL, REL_TOL * abs(candidate))
        if abs(value - candidate) <= allowed * (1 + 1e-9):
            return True
    return False


def sections(notebook):
    """(heading, markdown of the section, its code cells) in page order."""
    found, heading, prose, code = [], "(top)", [], []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for block in re.split(r"^(?=#{1,6} )", cell.source, flags=re.M):
                if block.startswith("#"):
                    found.append((heading, "\n".join(prose), code))
                    heading, prose, code = block.splitlines()[0], [], []
                prose.append(block)
        elif cell.cell_type == "code":
            code.append(cell)
    found.append((heading, "\n".join(prose), code))
    return found


def check_page(markdown_cells_from, executed) -> list[str]:
    """Prose numbers of the page ``markdown_cells_from`` (a notebook) that no output of their
    section (in ``executed``, the same page run) prints."""
    executed_code = [c for c in executed.cells if c.cell_type == "code"]
    problems, used = [], 0
    for heading, prose, code in sections(markdown_cells_from):
        outputs = executed_code[used : used + len(code)]
        used += len(code)
        printed = output_numbers(outputs)
        exempt = {
            match.group().strip().replace(" ", "")
            for line in _NOT_AN_OUTPUT.findall(prose)
            for match in _PROSE.finditer(line)
        }
        for written, value, half, signed in prose_numbers(prose):
            if written.replace(" ", "") in exempt:
                continue
            if not any(_agrees(value, half, signed, p) for p in printed):
                problems.append(f"{heading.strip()}: {written!r} is printed by no output here")
    return problems


def check(source: Path) -> list[str]:
    """Check every page against its executed copy: the book build's cache or references."""
    problems = []
    for page, notebook, executed in executed_pages(source):
        if executed is None:
            problems.append(f"{page.name}: {NOT_EXECUTED}")
            continue
        problems += [f"{page.name}: {p}" for p in check_page(notebook, executed)]
    return problems


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "book/_build/.jupyter_cache")
    summary = f"prose numbers ({root}) not printed by their section's outputs"
    sys.exit(report(check(root), summary))
