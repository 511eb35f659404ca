"""Put the book's JavaScript libraries into book/_vendor/, from the npm registry.

    python tools/fetch_js.py          # nox -s book runs this before building

The built book then loads mermaid (diagrams) and MathJax (formulas) from its own _static
folder instead of a CDN, so every page reads offline. (Not book/_static: jupyter-book adds
every .js file found there to every page.) Each package is a pinned version
whose tarball is checked against the registry's sha512 integrity, recorded here; nothing
is committed to the repository. A tarball already downloaded is reused from the npm/
folder of the project's cache (``lm_layers_explainer.catalog.cache_dir()``: by default
``$XDG_CACHE_HOME/lm_layers_explainer``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

from lm_layers_explainer.catalog import cache_dir

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "book" / "_vendor"  # html_static_path in _config.yml: served as _static/
REGISTRY = "https://registry.npmjs.org"

# name, version, integrity (from `npm view NAME@VERSION dist.integrity`), and the files
# the book needs from the package (prefixes inside the tarball's package/ folder).
PACKAGES = [
    (
        "mermaid",
        "11.12.1",  # the version sphinxcontrib-mermaid 2.1 asks its CDN for
        "sha512-UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcxlhHUvs7DPGgMjs2aeQxz5h9g==",
        # The single-file build: a classic script loads from file://, where the ES-module
        # build (which sphinxcontrib-mermaid names) cannot; book/_ext swaps it in.
        ["dist/mermaid.min.js", "LICENSE"],
    ),
    (
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        ["es5/tex-mml-chtml.js", "es5/output/chtml/fonts/woff-v2/", "LICENSE"],
    ),
]


def tarball(name: str, version: str, integrity: str) -> bytes:
    """The package tarball, checked against its sha512 integrity."""
    cached = cache_dir() / "npm" / f"{name}-{version}.tgz"
    downloaded = not cached.exists()
    if downloaded:
        url = f"{REGISTRY}/{name}/-/{name}-{version}.tgz"
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
    else:
        data = cached.read_bytes()
    algorithm, expected = integrity.split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{name}@{version}: tarball integrity mismatch ({actual})")
    if downloaded:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(data)
    return data


def extract(name: str, data: bytes, wanted: list[str]) -> int:
    """Extract the wanted files into vendor/<name>/, keeping their paths; returns a count."""
    target = VENDOR / name
    shutil.rmtree(target, ignore_errors=True)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            path = member.name.removeprefix("package/")
            if not member.isfile() or path.endswith(".map"):  # source maps: not needed
                continue
            if not any(path.startswith(w) for w in wanted):
                continue
            destination = target / path
            if target not in destination.resolve().parents:
                raise SystemExit(f"{name}: refusing path outside the vendor folder: {path}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.extractfile(member).read())
            count += 1
    return count


def main() -> None:
    for name, version, integrity, wanted in PACKAGES:
        stamp = VENDOR / name / ".version"
        contents = f"{version} {' '.join(wanted)}"  # a new file list extracts again
        if stamp.exists() and stamp.read_text() == contents:
            continue
        count = extract(name, tarball(name, version, integrity), wanted)
        stamp.write_text(contents)
        print(f"{name}@{version}: {count} files in {stamp.parent.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
