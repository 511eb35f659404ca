"""Headless Chromium for the browser tests, with every request to another host refused.

The `browser` nox session installs Debian's chromium and chromium-driver (as root) and sets
LMLE_BROWSER_REQUIRED=1; elsewhere the tests skip when no browser is found.
"""

import os
import shutil

import pytest

REQUIRED = os.environ.get("LMLE_BROWSER_REQUIRED") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _skip_or_fail(reason):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip_or_fail("selenium is not installed")
    if not (CHROMIUM and DRIVER):
        _skip_or_fail("chromium and chromedriver are not on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--window-size=1280,1000",
        "--proxy-server=127.0.0.1:9",  # every request to another host fails
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
