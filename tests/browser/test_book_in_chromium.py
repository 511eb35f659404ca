"""Every page of the built book, opened in headless Chromium from a local file server and
straight from disk (``file://``, as the README tells readers to), with all other network
refused: no console errors, every mermaid diagram drawn as SVG, every interactive view drawn,
every figure loaded, nothing requested from another host.

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


def test_the_book_has_pages():
    if not (BUILT / "index.html").exists():
        pytest.skip("no built book")
    names = {p.relative_to(BUILT).as_posix() for p in _pages()}
    assert {"explainers/attributions.html", "explainers/attention.html", "api.html"} <= names


@pytest.mark.parametrize("opened", ["http", "file"])
@pytest.mark.parametrize("page", [p.relative_to(BUILT).as_posix() for p in _pages()])
def test_page_reads_offline(browser, server, page, opened):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get_log("performance")
    root = server if opened == "http" else BUILT.as_uri()
    browser.get(f"{root}/{page}")
    _wait_for(browser, "return document.readyState === 'complete'")

    assert _wait_for(browser, MERMAID_DRAWN), "a mermaid block did not become an SVG"
    assert _wait_for(browser, IMAGES_LOADED, timeout=5), browser.execute_script(BROKEN_IMAGES)
    frames = browser.find_elements(By.CSS_SELECTOR, "iframe.lmle-attention")
    for frame in frames:
        browser.switch_to.frame(frame)
        drawn = _wait_for(browser, "return document.querySelectorAll('svg').length > 0")
        browser.switch_to.default_content()
        assert drawn, "an attention view drew no SVG"
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
