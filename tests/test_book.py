"""The book agrees with the module: reference notebooks, the entry-point graph, citations."""

import re
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from lm_layers_explainer import lm_layers_explainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from book_pages import BOOK, ROOT, executable_pages, reference_for  # noqa: E402

OVERVIEW = BOOK / "explainers" / "lm_layers_explainer.md"


def _code_sources(notebook):
    return [cell.source.strip() for cell in notebook.cells if cell.cell_type == "code"]


def test_there_are_executable_pages():
    assert OVERVIEW in executable_pages()


@pytest.mark.parametrize("page", executable_pages(), ids=lambda p: str(p.relative_to(BOOK)))
def test_reference_notebook_matches_its_page(page):
    reference = reference_for(page)
    assert reference.exists(), f"no reference notebook for {page.name}: run `nox -s refresh`"
    stored = nbformat.read(reference, as_version=4)
    assert _code_sources(stored) == _code_sources(jupytext.read(page)), (
        f"{reference.name} is out of date with {page.name}: run `nox -s refresh` and review "
        "the output diff"
    )
    executed = [cell for cell in stored.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in executed), "reference has unexecuted cells"


def _mermaid_blocks(text):
    return re.findall(r"```\{mermaid\}\n(.*?)```", text, flags=re.S)


def test_overview_graph_has_every_entry_point_with_a_link_that_lands():
    text = OVERVIEW.read_text(encoding="utf-8")
    (graph,) = _mermaid_blocks(text)
    nodes = dict(re.findall(r"(\w+)\((\w+)\)", graph))  # node id -> label
    clicks = dict(re.findall(r'click (\w+) "([^"]+)"', graph))
    labels = set(re.findall(r"^\((\S+)\)=$", text, flags=re.M))
    for name in lm_layers_explainer:
        node = next((n for n, label in nodes.items() if label == name), None)
        assert node, f"entry point {name!r} is missing from the overview graph"
        target = clicks.get(node)
        assert target, f"graph node {name!r} has no link"
        page, _, anchor = target.partition("#")
        if page:  # another page: book/explainers/<page>.html -> .md
            other = (OVERVIEW.parent / page).with_suffix(".md")
            assert other.exists(), target
            labels_there = set(re.findall(r"^\((\S+)\)=$", other.read_text(), flags=re.M))
            assert not anchor or anchor in labels_there, target
        else:
            assert anchor in labels, f"no label ({anchor})= on the overview page"


def _bib_keys():
    return set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), re.M))


def _cited_keys():
    keys = set()
    for page in BOOK.rglob("*.md"):
        if "_build" in page.parts:
            continue
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text(encoding="utf-8")):
            keys.update(key.strip() for key in group.split(","))
    return keys


def test_every_reference_is_cited_and_every_citation_exists():
    bib, cited = _bib_keys(), _cited_keys()
    assert not bib - cited, f"never cited: {sorted(bib - cited)}"
    assert not cited - bib, f"cited but not in references.bib: {sorted(cited - bib)}"


def test_required_references_are_present():
    required = {
        "alammar2021ecco",
        "vig2019bertviz",
        "kokhlikyan2020captum",
        "jain2019attention",
        "wiegreffe2019attention",
        "vashishth2019attention",
        "sundararajan2017axiomatic",
        "nostalgebraist2020logitlens",
        "geva2021feedforward",
    }
    assert required <= _bib_keys()
