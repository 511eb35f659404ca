"""The book's executable pages and their nbval reference notebooks (shared by tools and tests)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
REFERENCES = ROOT / "tests" / "notebooks"


def executable_pages() -> list[Path]:
    """Book pages (MyST markdown) that contain code cells."""
    return sorted(
        page
        for page in BOOK.rglob("*.md")
        if "_build" not in page.parts and "```{code-cell}" in page.read_text(encoding="utf-8")
    )


def reference_for(page: Path) -> Path:
    """tests/notebooks/<path of the page inside book/>.ipynb"""
    return (REFERENCES / page.relative_to(BOOK)).with_suffix(".ipynb")


NOT_EXECUTED = "the build has no executed copy of this page"


def executed_pages(source: Path):
    """(page, the page as a notebook, its executed copy or None) for every executable page.

    ``source`` is the book build's execution cache (``.jupyter_cache``), where a page that
    was not executed has no copy (None), or a folder laid out as tests/notebooks."""
    import jupytext
    import nbformat

    cache = None
    if source.name == ".jupyter_cache" or (source / "global.db").exists():
        from jupyter_cache import get_cache

        cache = get_cache(str(source))
    for page in executable_pages():
        notebook = jupytext.read(page)
        if cache is None:
            executed = nbformat.read(source / reference_for(page).relative_to(REFERENCES), 4)
        else:
            try:
                _, executed = cache.merge_match_into_notebook(notebook)
            except KeyError:
                executed = None
        yield page, notebook, executed


def report(problems: list[str], summary: str) -> int:
    """Print a check's problems and its summary line; the exit status (1 if any problem)."""
    for problem in problems:
        print("ERROR:", problem)
    print(f"{summary}: {len(problems)}")
    return 1 if problems else 0
