"""The outputs the book build computed equal the nbval references (run by `nox -s book`).

    python tools/check_book_outputs.py book/_build/.jupyter_cache

nbval already checks that running a page again reproduces its reference notebook. This
checks the other execution that readers see: the one in the book build. Both compare text
outputs (plain text, HTML, JSON, SVG, streams) after the replacements of
tests/notebooks/sanitize.cfg, through the one comparison of tools/compare_outputs.py (text
exactly, numbers and colours within its stated tolerance), skip cells tagged
``nbval-ignore-output`` (run times) and, like nbval, do not compare PNG images.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from book_pages import NOT_EXECUTED, REFERENCES, executed_pages, reference_for, report
from compare_outputs import differences

COMPARED = ("text/plain", "text/html", "application/json", "image/svg+xml")


def sanitizers(path: Path) -> list[tuple[re.Pattern, str]]:
    """(regex, replacement) pairs from an nbval sanitize file."""
    pairs, pattern = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("regex:"):
            pattern = re.compile(line.removeprefix("regex:").strip())
        elif line.startswith("replace:") and pattern is not None:
            pairs.append((pattern, line.removeprefix("replace:").strip()))
            pattern = None
    return pairs


def texts(cell, rules) -> list[str]:
    """The compared texts of a cell's outputs. As nbval does, the pieces of one stream are
    joined: a kernel may flush a cell's printing in one piece or in several."""
    found, streams = [], {}
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            if output.name in streams:
                found[streams[output.name]] += output.text
            else:
                streams[output.name] = len(found)
                found.append(output.text)
        elif "data" in output:
            found.extend(str(output.data[k]) for k in COMPARED if k in output.data)
    cleaned = []
    for text in found:
        for pattern, replacement in rules:
            text = pattern.sub(replacement, text)
        cleaned.append(text)
    return cleaned


def check(cache_dir: Path) -> list[str]:
    """Compare each page's outputs in the build's execution cache with its reference."""
    rules = sanitizers(REFERENCES / "sanitize.cfg")
    problems = []
    for page, _, built in executed_pages(cache_dir):
        name = page.name
        if built is None:
            problems.append(f"{name}: {NOT_EXECUTED}")
            continue
        ours = [c for c in built.cells if c.cell_type == "code"]
        theirs = [c for c in nbformat.read(reference_for(page), 4).cells if c.cell_type == "code"]
        if len(ours) != len(theirs):
            problems.append(f"{name}: {len(ours)} code cells, reference {len(theirs)}")
            continue
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            if "nbval-ignore-output" in b.get("metadata", {}).get("tags", []):
                continue
            for problem in differences(texts(a, rules), texts(b, rules)):
                problems.append(f"{name}: code cell {index} differs from the reference: {problem}")
    return problems


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "book/_build/.jupyter_cache")
    sys.exit(report(check(root), f"book build outputs ({root}) vs the references, differences"))
