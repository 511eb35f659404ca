"""Checks on the built HTML book that Sphinx does not make (run by `nox -s book`).

- every mermaid `click` link in every page resolves to an existing page and element id;
- every internal link (citations, cross-references, navigation) lands on an existing page
  and element id;
- no page loads a script, stylesheet or module from another host (the book reads offline),
  and none names thebe's CDN (see book/_ext/offline_book.py).

    python tools/check_built_book.py book/_build/html
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from book_pages import report

# <script src=...>, <link href=...> (stylesheets, icons, preloads) and ES module imports.
_LOADS = re.compile(
    r'<script[^>]*\ssrc="([^"]+)"|<link[^>]*\shref="([^"]+)"|\bimport\b[^;"\']*["\']([^"\']+)["\']'
)


def remote_loads(text: str) -> list[str]:
    """URLs on another host that a page's own markup loads (not its hyperlinks)."""
    found = []
    for match in _LOADS.finditer(text):
        tag = match.group(0)
        url = next(group for group in match.groups() if group)
        if tag.startswith("<link") and re.search(r'rel="(canonical|alternate)"', tag):
            continue
        if re.match(r"(https?:)?//", url):
            found.append(url)
    return found


def ids_in(page: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))


def check(root: Path) -> list[str]:
    problems = []
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.parts)
    mermaid_pages = clicks = citations = links = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for url in remote_loads(text):
            problems.append(f"{page.name}: loads {url} from another host")
        if "THEBE_JS_URL" in text:
            problems.append(f"{page.name}: carries thebe's CDN script")
        blocks = re.findall(r'<pre[^>]*class="mermaid"[^>]*>(.*?)</pre>', text, flags=re.S)
        mermaid_pages += bool(blocks)
        for block in blocks:
            for node, url in re.findall(r'click (\w+) "([^"]+)"', html.unescape(block)):
                clicks += 1
                target, _, anchor = url.partition("#")
                target_page = (page.parent / target) if target else page
                if not target_page.exists():
                    problems.append(f"{page.name}: node {node} links to missing page {url}")
                elif anchor and anchor not in ids_in(target_page):
                    problems.append(f"{page.name}: node {node} links to missing id {url}")
        citations += len(re.findall(r'<a class="reference internal" href="[^"]*#id\d+"', text))
        for href in re.findall(r'<a\s[^>]*?href="([^"]*)"', text):
            href = html.unescape(href)
            if not href or re.match(r"[a-z][a-z0-9+.-]*:|//", href):  # another site, mailto
                continue
            links += 1
            target, _, anchor = href.partition("#")
            target_page = page.parent / target.split("?")[0] if target else page
            if target_page.is_dir():
                target_page = target_page / "index.html"
            if not target_page.exists():
                problems.append(f"{page.name}: link {href} to a missing file")
            elif anchor and target_page.suffix == ".html" and anchor not in ids_in(target_page):
                problems.append(f"{page.name}: link {href} to a missing anchor")
    if not (mermaid_pages and clicks):
        problems.append("no mermaid graph with links in the built book")
    if not citations:
        problems.append("no citation links in the built book")
    print(
        f"{mermaid_pages} page(s) with mermaid, {clicks} node link(s), {citations} citation(s), "
        f"{links} internal link(s)"
    )
    return problems


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "book/_build/html")
    sys.exit(report(check(root), f"checked {root}, problems"))
