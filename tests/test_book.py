"""The built book in a real browser: math typeset by the bundled MathJax, figures loaded, nothing fetched
from the network. Needs `make book` first and Debian's `chromium`; skips without them unless
AE_COURSE_REQUIRE_BROWSER is set (CI sets it, so there a missing browser or build is a failure).
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# chapter page -> the least number of executed-output figures it must show
CHAPTERS = {"chapters/01_autoencoder.html": 5, "chapters/03_elbo.html": 2, "chapters/04_gaussian_kl.html": 2,
            "chapters/05_reparameterization.html": 2, "chapters/06_vae_mnist.html": 7,
            "chapters/02_denoising.html": 2, "chapters/07_conditional_vae.html": 3,
            "chapters/08_adversarial_regularization.html": 3, "chapters/14_comparison.html": 5,
            "chapters/09_aae_mnist.html": 8, "chapters/10_semi_supervised_aae.html": 3,
            "chapters/11_kl_term.html": 3, "chapters/12_bounds_and_priors.html": 2, "chapters/13_vq_vae.html": 3,
            "chapters/15_sources.html": 4}


def _skip_or_fail(reason: str):
    if os.environ.get("AE_COURSE_REQUIRE_BROWSER"):
        pytest.fail(reason + " (AE_COURSE_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        _skip_or_fail(f"no built book at {HTML}; run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _skip_or_fail("Chromium is not installed (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 2000})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url, wait_until="load", timeout=60_000)
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")
    return page, requested


@pytest.mark.parametrize("chapter, min_figures", CHAPTERS.items())
def test_chapter_renders_math_and_figures_offline(site, browser, chapter, min_figures, tmp_path):
    page, requested = _open(browser, f"{site}/{chapter}")
    typeset = page.evaluate("() => document.querySelectorAll('mjx-container').length")
    tex_errors = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
    raw_tex = page.evaluate("() => document.querySelectorAll('.math:not(:has(mjx-container))').length")
    figures = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')]
        .map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}))""")
    # Nothing on the page scrolls sideways in a 1280-px window: code cells, listings, printed outputs, tables.
    scrolling = page.evaluate("""() => [...document.querySelectorAll(
            'article pre, article div.highlight, article .cell_output, article table, article .output')]
        .filter(el => el.scrollWidth > el.clientWidth + 1)
        .map(el => ({tag: el.tagName, cls: el.className, over: el.scrollWidth - el.clientWidth,
                     text: (el.innerText || '').split('\\n').sort((a, b) => b.length - a.length)[0].slice(0, 120)}))""")
    notebook = page.evaluate("""() => [...document.querySelectorAll('a.download-notebook-button, a')]
        .map(a => a.getAttribute('href')).filter(h => h && h.endsWith('.ipynb'))""")
    page.screenshot(path=str(HTML.parent / (Path(chapter).stem + ".png")), full_page=False)
    page.close()
    assert not scrolling, f"{len(scrolling)} elements scroll sideways at 1280 px: {scrolling[:5]}"
    assert notebook, "the page offers its chapter as an .ipynb download"
    assert (HTML / "chapters" / notebook[0]).resolve().is_file(), notebook[0]
    assert typeset >= 10, f"MathJax typeset only {typeset} formulas"
    assert tex_errors == 0 and raw_tex == 0, f"{tex_errors} TeX errors, {raw_tex} formulas left as raw TeX"
    assert len(figures) >= min_figures, f"expected at least {min_figures} figures, found {figures}"
    assert all(f["ok"] for f in figures), f"figures that did not load: {[f for f in figures if not f['ok']]}"
    external = [url for url in requested if not url.startswith((site, "data:"))]
    assert not external, f"the page fetched from outside the book: {external}"


def test_landing_page_links_the_chapters(site, browser):
    page, requested = _open(browser, f"{site}/index.html")
    text = page.inner_text("body")
    links = page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    page.close()
    assert "Autoencoders, executed" in text
    assert any(link and "01_autoencoder" in link for link in links)
    assert all(url.startswith((site, "data:")) for url in requested)
