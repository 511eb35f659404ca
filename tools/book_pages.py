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
