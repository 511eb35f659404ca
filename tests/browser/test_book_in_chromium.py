"""Every page of the built book, opened in headless Chromium from a local file server and
straight from disk (``file://``, as the README tells readers to), with all other network
refused: no console errors, every mermaid diagram drawn as SVG, every interactive view drawn,
every figure loaded, nothing requested from another host; at 1280 px wide, nothing in the
content column scrolls sideways, and every attention view's drawing (the neuron view's with
a token expanded as well) lies inside its frame.

The `browser` nox session builds the book first (book/_build/html).
"""

import json
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .conftest import _skip_or_fail

BUILT = Path(__file__).resolve().parents[2] / "book" / "_build" / "html"
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-error"}


def _pages() -> list[Path]:
    skip = {"_static", "_sources", "_images"}
    return sorted(p for p in BUILT.rglob("*.html") if not skip & set(p.relative_to(BUILT).parts))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (BUILT / "index.html").exists():
        _skip_or_fail(f"no built book in {BUILT}: run `nox -s book` (or `nox -s browser`)")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(BUILT)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _requests(browser) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _wait_for(browser, script: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.execute_script(script):
            return True
        time.sleep(0.25)
    return False


MERMAID_DRAWN = """
const blocks = document.querySelectorAll('pre.mermaid, div.mermaid');
return Array.from(blocks).every(b => b.querySelector('svg'));
"""
IMAGES_LOADED = """
return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0);
"""
BROKEN_IMAGES = """
return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => i.src.slice(0, 80));
"""

# What an attention view draws and shows, in the frame's coordinates, against the frame's size.
DRAWING_OUTSIDE_FRAME = """
let right = 0, bottom = 0;
for (const el of document.querySelectorAll('body *')) {
  if (el.tagName === 'SCRIPT') continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0 && box.height === 0) continue;
  right = Math.max(right, box.right);
  bottom = Math.max(bottom, box.bottom);
}
const width = document.documentElement.clientWidth, height = window.innerHeight;
return right > width + 1 || bottom > height + 1 ? [right, bottom, width, height] : null;
"""
# Expand the neuron view's first token, as a reader does: hover it, click its "+".
EXPAND_NEURON_VIEW = """
const plus = document.querySelector('path.plus-sign');
if (!plus) return false;
const target = plus.nextElementSibling;
target.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
target.dispatchEvent(new MouseEvent('click', {bubbles: true}));
return true;
"""
# Elements of the content column that scroll sideways (or run past it) at this width.
SIDEWAYS = """
const column = document.querySelector('main') || document.body;
const edge = column.getBoundingClientRect().right;
const found = [];
for (const el of column.querySelectorAll('*')) {
  const style = getComputedStyle(el);
  const scrolls = ['auto', 'scroll'].includes(style.overflowX)
    && el.scrollWidth > el.clientWidth + 1;
  const box = el.getBoundingClientRect();
  if (scrolls || (box.width > 0 && box.right > edge + 1 && style.position !== 'fixed')) {
    found.push(el.tagName + '.' + el.className + ': ' + el.textContent.slice(0, 60));
  }
}
if (document.documentElement.scrollWidth > document.documentElement.clientWidth + 1) {
  found.push('the page itself');
}
return found;
"""


def _inside_frame(browser) -> bool:
    return _wait_for(browser, f"return (() => {{{DRAWING_OUTSIDE_FRAME}}})() === null")


def _check_views(browser) -> None:
    from selenium.webdriver.common.by import By

    for index, frame in enumerate(browser.find_elements(By.CSS_SELECTOR, "iframe.lmle-attention")):
        browser.switch_to.frame(frame)
        drawn = _wait_for(browser, "return document.querySelectorAll('svg').length > 0")
        fits = {"as opened": drawn and _inside_frame(browser)}
        outside = browser.execute_script(DRAWING_OUTSIDE_FRAME)
        if drawn and browser.execute_script(EXPAND_NEURON_VIEW):
            fits["a token expanded"] = _inside_frame(browser)
            outside = outside or browser.execute_script(DRAWING_OUTSIDE_FRAME)
        browser.switch_to.default_content()
        assert drawn, f"attention view {index} drew no SVG"
        assert all(fits.values()), (
            f"attention view {index}: the drawing's (right, bottom) {outside} lies outside its "
            f"frame's (width, height); fits: {fits}"
        )


def test_the_book_has_pages():
    if not (BUILT / "index.html").exists():
        pytest.skip("no built book")
    names = {p.relative_to(BUILT).as_posix() for p in _pages()}
    assert {"explainers/attributions.html", "explainers/attention.html", "api.html"} <= names


@pytest.mark.parametrize("opened", ["http", "file"])
@pytest.mark.parametrize("page", [p.relative_to(BUILT).as_posix() for p in _pages()])
def test_page_reads_offline(browser, server, page, opened):
    from selenium.common.exceptions import NoAlertPresentException

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get_log("performance")
    root = server if opened == "http" else BUILT.as_uri()
    browser.get(f"{root}/{page}")
    _wait_for(browser, "return document.readyState === 'complete'")

    assert _wait_for(browser, MERMAID_DRAWN), "a mermaid block did not become an SVG"
    assert _wait_for(browser, IMAGES_LOADED, timeout=5), browser.execute_script(BROKEN_IMAGES)
    _check_views(browser)
    sideways = browser.execute_script(SIDEWAYS)
    assert not sideways, f"scrolls sideways at 1280 px: {sideways}"
    time.sleep(0.5)  # late console messages (MathJax, theme scripts)

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    elsewhere = [
        url
        for url in _requests(browser)
        if urlparse(url).scheme not in LOCAL_SCHEMES and not url.startswith(root)
    ]
    assert not elsewhere, f"requested from another host: {elsewhere}"


def test_every_notebook_page_links_to_itself_as_a_notebook():
    """The "Run this page" note of every page with code links to that page as a notebook,
    written next to its HTML, with the page's code cells, in order."""
    import jupytext

    if not (BUILT / "index.html").exists():
        pytest.skip("no built book")
    book = BUILT.parents[1]
    sources = [p for p in sorted(book.rglob("*.md")) if "_build" not in p.parts]
    pages = [p for p in sources if p.read_text().startswith("---\njupytext:")]
    assert len(pages) >= 6
    for page in pages:
        name = page.relative_to(book).with_suffix("")
        built = (BUILT / name).with_suffix(".html").read_text(encoding="utf-8")
        link = f'href="{name.name}.ipynb" download="{name.name}.ipynb"'
        assert "Run this page" in built and link in built, name
        notebook = jupytext.read((BUILT / name).with_suffix(".ipynb"))
        code = [c.source for c in notebook.cells if c.cell_type == "code"]
        assert code == [c.source for c in jupytext.read(page).cells if c.cell_type == "code"]
        assert code and not any(c.get("outputs") for c in notebook.cells if c.cell_type == "code")
