"""Attention views in a real browser: headless Chromium, network refused.

Run by `nox -s browser` (which installs Debian's chromium and chromium-driver where it runs
as root). Elsewhere these tests skip unless LMLE_BROWSER_REQUIRED=1, which the session sets.
"""

import time

import numpy as np
import pytest

from lm_layers_explainer import lm_layers_explainer

HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(1)>'


def test_two_views_on_one_page_both_draw_offline(browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    views = [
        lm_layers_explainer["attention_head_view"]("tiny-bert")("the cat sat on the mat"),
        lm_layers_explainer["attention_model_view"]("tiny-bert")("the cat sat", "the cat lay"),
        lm_layers_explainer["attention_neuron_view"]("tiny-gpt2")("The cat sat"),
        lm_layers_explainer["attention_head_view"]("tiny-gpt2")(HOSTILE),
    ]
    page = tmp_path / "views.html"
    page.write_text(
        "<!DOCTYPE html><html><body>" + "".join(v.html for v in views) + "</body></html>"
    )
    browser.get(page.as_uri())
    time.sleep(3)
    frames = browser.find_elements(By.CSS_SELECTOR, "iframe.lmle-attention")
    assert len(frames) == len(views)
    for frame in frames:
        browser.switch_to.frame(frame)
        assert browser.find_elements(By.TAG_NAME, "svg"), "a view drew no SVG"
        assert len(browser.find_elements(By.TAG_NAME, "text")) >= 4
        assert not browser.find_elements(By.TAG_NAME, "img")
        browser.switch_to.default_content()
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_every_explainer_shows_hostile_text_without_running_it(
    browser, tmp_path, explain_everything, hostile_texts
):
    """All entry points' HTML, for texts that try to run script: no alert, no error, and
    the hostile text is on the page as text."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get_log("browser")
    for index, text in enumerate(hostile_texts):
        results = explain_everything(text)
        page = tmp_path / f"hostile{index}.html"
        body = "".join(
            f"<section id='{name}'>{r._repr_html_()}</section>" for name, r in results.items()
        )
        page.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>", encoding="utf-8")
        browser.get(page.as_uri())
        time.sleep(2)
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        shown = (
            browser.find_element(By.ID, "tokens").text
            + browser.find_element(By.ID, "attributions").text
        )
        # the views label tokens with positions and scores, one per line: read the tokens alone
        letters = "".join(c for c in shown if not (c.isdigit() or c in "\n.-+e"))
        assert "alrt" in letters or "{" in letters, shown
        assert (
            browser.execute_script(
                "return document.querySelectorAll('body img:not([src^=\"data:\"])').length"
            )
            == 0
        )
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, (text, errors)


def test_the_continuation_explorer_shades_what_a_token_depends_on(browser, tmp_path):
    """Hover a target token, or Tab to it: the tokens before it take their score's colour;
    with nothing chosen, none has one. No script runs (plain CSS)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    result = lm_layers_explainer["attributions"]("tiny-gpt2", "The cat sat on")(
        method="feature_ablation", target=" the mat today"
    )
    page = tmp_path / "explorer.html"
    page.write_text(f"<!DOCTYPE html><html><body>{result.to_html()}</body></html>")
    browser.get(page.as_uri())
    background = "return getComputedStyle(document.querySelector(arguments[0])).backgroundColor"
    clear = browser.execute_script(background, ".s0")
    strongest = int(np.nanargmax(np.abs(result.scores[2])))  # a source of target token 2
    target = browser.find_element(By.CSS_SELECTOR, ".t2")
    ActionChains(browser).move_to_element(target).perform()
    assert browser.execute_script(background, f".s{strongest}") != clear  # hover
    after = result.n_input + 2  # the token itself and later ones stay clear
    assert browser.execute_script(background, f".s{after + 1}") == clear
    ActionChains(browser).move_by_offset(0, 300).perform()
    browser.execute_script("document.querySelector('.t1').focus()")  # the keyboard's way
    shaded = [
        browser.execute_script(background, f".s{s}") != clear
        for s in range(result.n_input + 1)
        if result.scores[1, s] != 0
    ]
    assert shaded and all(shaded)
    assert browser.execute_script("return document.scripts.length") == 0
