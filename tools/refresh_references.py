"""Execute every book page and store it, with its outputs, as the nbval reference notebook.

    nox -s refresh            # after an intended change to what a page shows

Each page runs in its own folder, as the book build runs it, with the environment the
nox sessions set (offline hub, no progress bars). Review the diff of tests/notebooks/ before
committing it: it is the change readers will see.
"""

from __future__ import annotations

import sys

import jupytext
import nbformat
from book_pages import executable_pages, reference_for
from nbclient import NotebookClient


def refresh(page) -> None:
    notebook = jupytext.read(page)
    notebook.metadata.pop("jupytext", None)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"  # stable ids: a refresh diff shows only what changed
    client = NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(page.parent)}},
    )
    client.execute()
    target = reference_for(page)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    print(f"refreshed {target.relative_to(target.parents[2])}")


if __name__ == "__main__":
    pages = executable_pages()
    wanted = set(sys.argv[1:])
    for page in pages:
        if not wanted or page.stem in wanted:
            refresh(page)
