"""The book's pages as Jupyter notebooks, in ``notebooks/`` (ignored by git), laid out as
the book is (``notebooks/explainers/attributions.ipynb``, ...).

    nox -s notebooks                               # convert, then open them in JupyterLab
    nox -s notebooks -- --check lm_layers_explainer   # convert, then execute that page (CI)

The pages stay the one source: these notebooks are written anew on every run, so edit the
MyST pages in ``book/``, not the notebooks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat
from book_pages import BOOK, ROOT, executable_pages
from nbclient import NotebookClient

OUT = ROOT / "notebooks"


def convert(page: Path) -> Path:
    """Write one page as a notebook under ``notebooks/``; returns its path."""
    notebook = jupytext.read(page)
    notebook.metadata.pop("jupytext", None)  # a copy to run, not a paired source
    target = (OUT / page.relative_to(BOOK)).with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def execute(path: Path) -> None:
    """Run a converted notebook top to bottom in its folder; raises on the first error."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    client.execute()
    cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    print(f"executed {path.relative_to(ROOT)}: {cells} code cells, no errors")


def main(arguments: list[str]) -> None:
    check = "--check" in arguments
    wanted = {a for a in arguments if not a.startswith("--")}
    pages = executable_pages()
    unknown = wanted - {page.stem for page in pages}
    if unknown:
        raise SystemExit(
            f"no book page named {', '.join(sorted(unknown))}; pages: "
            + ", ".join(page.stem for page in pages)
        )
    converted = {page.stem: convert(page) for page in pages}
    print(f"{len(converted)} notebooks in {OUT.relative_to(ROOT)}/")
    if check:
        for name in sorted(wanted) or sorted(converted):
            execute(converted[name])


if __name__ == "__main__":
    main(sys.argv[1:])
