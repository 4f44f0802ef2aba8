"""The built HTML book in a real browser (headless Chromium, driven by Playwright).

The book is built ONCE per test session (a session fixture) into a temporary
directory, from the chapters *as committed* (execution off: the committed
outputs are the `standard` profile's, and nbval already re-runs every chapter).
Building into a temporary directory also keeps the `quick` profile of the test
run out of the real `_build/` execution cache. Set ``RPBOOK_BOOK_HTML`` to an
already built ``_build/html`` to skip the build.

Every page is served over HTTP from 127.0.0.1 (fonts and scripts behave as on
a web server) and opened in Debian's Chromium (never a downloaded browser).
Every page is opened at a phone's width (400 px) and a desktop's (1400 px).
For each: no console error at all, no failed request, nothing wider than the
screen, every image loaded, math rendered by MathJax, captions with readable
contrast, the Colab launch button (to the chapter's generated twin in
``book/_colab/``) and the download button present, and every HTML twin of a
widget responds (moving its slider changes the frame shown and its value
label). Full-page screenshots go to ``$RPBOOK_SCREENSHOTS`` if set.

Marked ``book``: ``pytest -m "not book"`` skips it locally. Without Chromium the
test skips, except under CI (``$CI`` set), where it fails.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("RPBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Every console error fails a page. (The former noise is fixed in the build: rpbook.sphinx_ext emits
# sphinx-thebe's THEBE_JS_URL script once, html_context.default_mode names the theme mode,
# and the book has a favicon.)
WIDTHS = {"phone": 400, "desktop": 1400}
BUILD_TIMEOUT_S = 900


def _toc_pages() -> tuple[str, list[str], list[str], list[str]]:
    """The root page, the notebook chapters, the Assignments part, and the Markdown pages (closing chapter, appendix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = {part["caption"]: [entry["file"] for entry in part["chapters"]] for part in toc.get("parts", [])}
    chapters = [entry["file"] for entry in toc.get("chapters", [])] + parts.get("Chapters", [])
    notebooks = [c for c in chapters if (ROOT / f"{c}.ipynb").is_file()]
    markdown = [c for c in chapters + parts.get("Appendix", []) if (ROOT / f"{c}.md").is_file()]
    return toc["root"], notebooks, parts.get("Assignments", []), markdown


ROOT_PAGE, CHAPTER_PAGES, ASSIGNMENT_PAGES, MARKDOWN_PAGES = _toc_pages()


def _chromium_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the browser test")
    pytest.skip(message)


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The built HTML: ``$RPBOOK_BOOK_HTML``, or a fresh build of the committed chapters."""
    given = os.environ.get("RPBOOK_BOOK_HTML")
    if given:
        html = Path(given)
        assert (html / "index.html").exists(), f"$RPBOOK_BOOK_HTML={given} has no index.html"
        return html
    out = tmp_path_factory.mktemp("book")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"  # the committed outputs, as readers see them
    config_path = out / "_config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jupyter_book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    cmd = [jupyter_book, "build", str(ROOT), "--path-output", str(out), "--config", str(config_path), "--keep-going"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env)
    html = out / "_build" / "html"
    assert done.returncode == 0 and (html / "index.html").exists(), done.stdout[-4000:] + done.stderr[-4000:]
    return html


@pytest.fixture(scope="session")
def server(book_html):
    """Serve the built book over HTTP on a free local port."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no access log in the test output
            pass

    handler = functools.partial(QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    executable = _chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _open(browser, url: str, width: int = 1280):
    """Open ``url`` at ``width`` px; return the page and the console/page errors collected while loading it."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    # Failed loads are reported with their URL here (the console's "Failed to load resource" has none).
    page.on("requestfailed", lambda req: errors.append(f"failed request: {req.url} ({req.failure})"))
    page.on("response", lambda resp: errors.append(f"HTTP {resp.status}: {resp.url}") if resp.status >= 400 else None)
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors


def _real_errors(errors: list[str]) -> list[str]:
    return list(errors)


def _check_fits_the_screen(page) -> None:
    """Nothing may make the page scroll sideways (wide content scrolls inside its own box)."""
    scroll, screen = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > screen:
        culprits = page.evaluate("""() => { const W = window.innerWidth; const out = [];
            for (const e of document.querySelectorAll('article *')) {
              const r = e.getBoundingClientRect(); if (r.right <= W + 0.5 || r.width === 0) continue;
              let p = e.parentElement, clipped = false;
              while (p) { if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) { clipped = true; break; }
                          p = p.parentElement; }
              if (!clipped) out.push(`${e.tagName}.${e.className}: ${(e.textContent || '').trim().slice(0, 50)}`); }
            return out.slice(0, 5); }""")
        raise AssertionError(f"page is {scroll} px wide on a {screen} px screen: {culprits}")


def _check_caption_contrast(page) -> None:
    """Captions need a contrast of at least 4.5:1 against the page (WCAG AA for body text)."""
    ratios = page.evaluate("""() => {
        const lum = c => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(x => { x = x / 255;
            return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
            return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
        const bg = lum(getComputedStyle(document.body).backgroundColor);
        return Array.from(document.querySelectorAll('figcaption p, figcaption')).map(e => {
            const fg = lum(getComputedStyle(e).color);
            return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05); }); }""")
    assert all(r >= 4.5 for r in ratios), f"caption contrast too low: {min(ratios):.2f}"


def _check_images(page) -> None:
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=15_000)
    broken = page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.src.slice(0, 120))")
    assert not broken, f"images that did not load: {broken}"


def _check_math(page) -> int:
    n_math = page.locator("article .math").count()
    if n_math:
        page.wait_for_function(
            f"document.querySelectorAll('article mjx-container').length >= {n_math}", timeout=20_000)
        assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
    return n_math


def _check_twins(page) -> int:
    """Move every to_jshtml slider to its last frame and check that the shown frame and its label change."""
    sliders = page.locator("div.animation input[type=range]")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        slider.scroll_into_view_if_needed()
        image = slider.locator("xpath=ancestor::div[contains(@class,'animation')]//img").first
        label = slider.locator("xpath=ancestor::div[contains(@class,'animation')]//output").first
        before, label_before = image.get_attribute("src"), label.text_content()
        last = slider.get_attribute("max")
        assert last is not None and int(last) > 0, "an HTML twin with a single frame"
        slider.evaluate("(s, v) => { s.value = v; s.dispatchEvent(new Event('input', {bubbles: true})); }", last)
        after = image.get_attribute("src")
        assert after and after != before, f"moving slider {i} to frame {last} did not change the picture"
        page.wait_for_function("([l, t]) => l.textContent !== t", arg=[label.element_handle(), label_before],
                               timeout=5_000)
    return sliders.count()


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("RPBOOK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("screen", WIDTHS)
def test_root_page_loads(browser, server, screen):
    page, errors = _open(browser, f"{server}/index.html", WIDTHS[screen])
    assert page.locator("article h1").count() >= 1
    _check_images(page)
    _check_fits_the_screen(page)
    licence = page.locator(".rpbook-license").inner_text()
    assert "CC BY 4.0" in licence and "MIT" in licence, licence
    _screenshot(page, f"intro-{screen}")
    assert not _real_errors(errors), _real_errors(errors)
    page.close()


@pytest.mark.parametrize("screen", WIDTHS)
@pytest.mark.parametrize("chapter", CHAPTER_PAGES, ids=lambda c: Path(c).name)
def test_chapter_page(browser, server, chapter, screen):
    from rpbook.colab_export import colab_path

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    twin = colab_path(ROOT, ROOT / f"{chapter}.ipynb").relative_to(ROOT).as_posix()
    assert (ROOT / twin).is_file(), f"no Colab twin {twin}: run python -m rpbook.colab_export"
    page, errors = _open(browser, f"{server}/{chapter}.html", WIDTHS[screen])
    assert page.locator("article h1").count() >= 1, "no chapter title"
    _check_images(page)
    assert page.locator("article img").count() >= 1, "a chapter without a single figure"
    _check_math(page)
    colab = page.locator(f'a[href*="colab.research.google.com/github/{repo}/blob/"][href$="/{twin}"]')
    assert colab.count() >= 1, f"no Colab launch button opening {twin}"
    _check_fits_the_screen(page)
    _check_caption_contrast(page)
    assert page.locator(f'.dropdown-download-buttons a[href$="{Path(chapter).name}.ipynb"]').count() >= 1, \
        "no download button for the notebook"
    _check_twins(page)
    _screenshot(page, f"{Path(chapter).name}-{screen}")
    assert not _real_errors(errors), _real_errors(errors)
    page.close()


@pytest.mark.parametrize("screen", WIDTHS)
@pytest.mark.parametrize("page_name", MARKDOWN_PAGES, ids=lambda c: Path(c).name)
def test_markdown_page(browser, server, page_name, screen):
    """The closing chapter and the appendix pages: a title, math rendered, no overflow, no console error."""
    page, errors = _open(browser, f"{server}/{page_name}.html", WIDTHS[screen])
    assert page.locator("article h1").count() >= 1, "no page title"
    _check_math(page)
    _check_fits_the_screen(page)
    _screenshot(page, f"{Path(page_name).name}-{screen}")
    assert not _real_errors(errors), _real_errors(errors)
    page.close()


def test_every_chapter_with_a_widget_has_an_html_twin(browser, server):
    """Chapter 2's explorers are live in Jupyter; the static page must carry their JavaScript twins."""
    chapter = next(c for c in CHAPTER_PAGES if Path(c).name.startswith("02_"))
    page, _ = _open(browser, f"{server}/{chapter}.html")
    assert _check_twins(page) >= 2
    page.close()


@pytest.mark.parametrize("screen", WIDTHS)
@pytest.mark.parametrize("page_name", ASSIGNMENT_PAGES, ids=lambda c: Path(c).name)
def test_assignment_page(browser, server, page_name, screen):
    """The instructor guide and each lab's student version: they load cleanly; labs have Colab and no solution."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    page, errors = _open(browser, f"{server}/{page_name}.html", WIDTHS[screen])
    _check_fits_the_screen(page)
    assert page.locator("article h1").count() >= 1, "no title"
    _check_images(page)
    _check_math(page)
    text = page.locator("article").inner_text()
    if (ROOT / f"{page_name}.ipynb").exists():
        colab = page.locator(f'a[href*="colab.research.google.com/github/{repo}/blob/"][href$="{page_name}.ipynb"]')
        assert colab.count() >= 1, "no Colab launch button for this lab"
        assert "grader.check(" in text and "Reference answer" not in text and "Rubric (" not in text
        assert "BEGIN SOLUTION" not in text
    _screenshot(page, f"{Path(page_name).name}-{screen}")
    assert not _real_errors(errors), _real_errors(errors)
    page.close()
