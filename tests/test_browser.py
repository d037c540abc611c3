"""The built book in a real browser (Playwright driving Debian's Chromium).

The site is served from 127.0.0.1 and every page of _toc.yml is loaded. A page
passes when the browser saw no console error, no uncaught exception, no failed
or 4xx request for a local file and no request to any other host (the book must
work offline: MathJax included), when every image decoded, every formula was
typeset by MathJax, and the previous/next links follow _toc.yml.

Screenshots of the title page and of the attention-scores chapter go to
test-artifacts/ (git-ignored).

Without a browser the tests skip, except in CI (CI=true), where they fail.
Chromium: `apt-get install chromium` (COURSE_CHROMIUM=/path overrides).
"""
from __future__ import annotations

import functools
import os
import shutil
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote_plus, urlparse

import pytest

from site_build import REPO, SiteBuildError, built_site, toc_pages


# Module-scoped work (executions, builds) happens once: keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("site")

PAGES = toc_pages()
SCORING_CHAPTER = "book/03_attention_scores"
ARTIFACTS = REPO / "test-artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000


def _no_browser(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}; CI=true, so the browser tests must run, not skip", pytrace=False)
    pytest.skip(reason)


def _chromium() -> str | None:
    candidates = [os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium",
                  "/usr/bin/chromium-browser", shutil.which("chromium"),
                  shutil.which("chromium-browser"), shutil.which("google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def is_local(url: str) -> bool:
    parts = urlparse(url)
    if parts.scheme not in {"http", "https", "ws", "wss"}:
        return True  # data:, blob:, about: never leave the machine
    return parts.hostname in LOCAL_HOSTS


# ---------------------------------------------------------------- fixtures --
@pytest.fixture(scope="session")
def site() -> Path:
    try:
        return built_site()
    except SiteBuildError as err:
        pytest.fail(str(err), pytrace=False)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class serve:
    """Serve a directory on 127.0.0.1 from a thread: `with serve(d) as base_url: ...`."""

    def __init__(self, directory: Path):
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def base_url(site):
    with serve(site) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -r requirements.txt)")
    executable = _chromium()
    if executable is None:
        _no_browser("no Chromium found (apt-get install chromium, or set COURSE_CHROMIUM)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception:
        playwright.stop()
        raise
    yield chromium
    chromium.close()
    playwright.stop()


@dataclass
class Visit:
    """One page load and everything the browser reported while loading it."""
    page: object
    url: str
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_local: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = []
        if self.status != 200:
            out.append(f"HTTP {self.status} for the page itself (not built?)")
        out += [f"console error: {m}" for m in self.console_errors]
        out += [f"uncaught exception: {m}" for m in self.page_errors]
        out += [f"failed local request: {m}" for m in self.failed_local]
        out += [f"request to another host: {m}" for m in self.external]
        return out


@pytest.fixture
def visit(browser, request):
    """visit(path) loads a page in a fresh browser context and waits until it settled:
    network idle, MathJax done typesetting, images decoded."""
    contexts = []

    def _visit(path: str, base: str | None = None) -> Visit:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        # The book's server (and so the build) only when a test visits the book.
        v = Visit(page=page, url=f"{base or request.getfixturevalue('base_url')}/{path}")

        def block(route):
            v.external.append(route.request.url)
            route.abort("blockedbyclient")

        context.route(lambda url: not is_local(url), block)
        page.on("console", lambda m: v.console_errors.append(f"{m.text} ({m.location.get('url', '')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: v.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: v.failed_local.append(f"{r.url} ({r.failure})")
                if is_local(r.url) else None)
        page.on("response", lambda r: v.failed_local.append(f"{r.url} (HTTP {r.status})")
                if r.status >= 400 and is_local(r.url) else None)

        response = page.goto(v.url, wait_until="networkidle")
        v.status = response.status if response else None
        if v.status == 200:
            page.evaluate("""async () => {
                if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                    await MathJax.startup.promise;
                }
                await Promise.all(Array.from(document.images).map(img => {
                    img.loading = "eager";
                    return img.complete ? null : new Promise(ok => { img.onload = img.onerror = ok; });
                }));
            }""")
            page.wait_for_load_state("networkidle")  # fonts MathJax asked for while typesetting
        return v

    yield _visit
    for context in contexts:
        context.close()


# ------------------------------------------------------------------ checks --
def broken_images(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.images)
        .filter(img => !(img.complete && img.naturalWidth > 0 && img.naturalHeight > 0))
        .map(img => img.getAttribute('src'))""")


def untypeset_math(page) -> dict:
    """Formulas the page holds, and how many MathJax left untypeset or in error."""
    return page.evaluate("""() => {
        const math = Array.from(document.querySelectorAll('span.math, div.math'));
        return {
            total: math.length,
            untypeset: math.filter(m => !m.querySelector('mjx-container'))
                           .map(m => m.textContent.slice(0, 80)),
            errors: Array.from(document.querySelectorAll('mjx-merror'))
                         .map(e => e.getAttribute('data-mjx-error') || e.textContent),
            mathjax: !!window.MathJax,
        };
    }""")


def link_target(page, selector: str) -> str | None:
    link = page.query_selector(selector)
    return None if link is None else urlparse(link.evaluate("a => a.href")).path


def screenshot(page, name: str, **kwargs):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), **kwargs)


# ------------------------------------------------------------------- tests --
@pytest.mark.parametrize("index", range(len(PAGES)), ids=PAGES)
def test_page_renders_cleanly(visit, index):
    name = PAGES[index]
    v = visit(f"{name}.html")
    problems = v.problems()
    if v.status == 200:
        page = v.page
        problems += [f"image did not load: {src}" for src in broken_images(page)]
        math = untypeset_math(page)
        if math["total"] and not math["mathjax"]:
            problems.append(f"{math['total']} formulas but MathJax did not load")
        problems += [f"formula not typeset: {t!r}" for t in math["untypeset"]]
        problems += [f"MathJax error: {e}" for e in math["errors"]]
        # Previous / next links follow the reading order of _toc.yml.
        if index > 0:
            got = link_target(page, "a.left-prev")
            if got is None or not got.endswith(f"/{PAGES[index - 1]}.html"):
                problems.append(f"previous link {got!r}, expected {PAGES[index - 1]}.html")
        if index < len(PAGES) - 1:
            got = link_target(page, "a.right-next")
            if got is None or not got.endswith(f"/{PAGES[index + 1]}.html"):
                problems.append(f"next link {got!r}, expected {PAGES[index + 1]}.html")
        if Path(name).name[:2].isdigit():  # a chapter: an executed notebook
            cells = page.locator("div.cell").count()
            outputs = page.locator("div.cell div.cell_output").count()
            if not cells or not outputs:
                problems.append(f"chapter shows {cells} code cells and {outputs} outputs")
        if index == 0:
            screenshot(page, "title_page.png")
    assert not problems, f"{name}.html:\n  " + "\n  ".join(problems)


def test_scoring_chapter_typesets_the_attention_formula(visit):
    v = visit(f"{SCORING_CHAPTER}.html")
    assert v.status == 200, f"{SCORING_CHAPTER}.html was not built"
    assert not v.problems(), v.problems()
    page = v.page
    assert page.locator("mjx-container").count() > 0, "MathJax rendered no math"
    tex = page.evaluate("() => Array.from(MathJax.startup.document.math).map(m => m.math)")
    assert any("softmax" in t for t in tex), f"no softmax among the formulas: {tex[:10]}"
    formula = [t for t in tex if "softmax" in t and "sqrt" in t and "d_k" in t]
    assert formula, f"the attention formula softmax(QK^T/sqrt(d_k))V is not typeset: {tex[:10]}"
    figures = page.evaluate("""() => Array.from(document.querySelectorAll('main img, article img'))
        .filter(img => !img.closest('.navbar-brand, .sidebar-primary-items__start'))
        .map(img => [img.getAttribute('src'), img.naturalWidth])""")
    assert figures, "the chapter shows no figure"
    assert all(w > 0 for _, w in figures), figures
    screenshot(page, "attention_scores.png")
    # The attention formula itself, typeset, as a reader sees it.
    page.evaluate("""() => {
        const items = Array.from(MathJax.startup.document.math)
            .filter(m => m.math.includes('softmax') && m.math.includes('sqrt'));
        const item = items.find(m => m.display) || items[0];
        item.typesetRoot.scrollIntoView({block: 'center'});
    }""")
    screenshot(page, "attention_scores_formula.png")


@pytest.mark.parametrize("query, expected_page", [
    ("softmax", SCORING_CHAPTER),
    ("positional encoding", None),
])
def test_search_finds(visit, query, expected_page):
    v = visit(f"search.html?q={quote_plus(query)}")
    page = v.page
    page.wait_for_selector("#search-results .search-summary")  # Sphinx's "Search finished"
    hits = [urlparse(a.evaluate("a => a.href")).path
            for a in page.query_selector_all("#search-results ul.search li a")]
    assert not v.problems(), v.problems()
    assert hits, f"searching {query!r} found nothing"
    if expected_page:
        assert any(h.endswith(f"/{expected_page}.html") for h in hits), \
            f"searching {query!r} did not find {expected_page}: {hits}"


def test_site_root_leads_to_the_title_page(visit):
    v = visit("index.html")
    v.page.wait_for_url(f"**/{PAGES[0]}.html")
    assert not v.problems(), v.problems()


@pytest.mark.parametrize("name", [SCORING_CHAPTER] + [p for p in PAGES if "/exercises/" in p][:1])
def test_launch_and_download_buttons_work(visit, name):
    """The rocket menu offers Binder, Colab and JupyterHub; the download menu's .ipynb
    is served and is the page's notebook."""
    v = visit(f"{name}.html")
    assert v.status == 200, f"{name}.html was not built"
    page = v.page
    page.locator(".dropdown-launch-buttons button.dropdown-toggle").hover()
    launch = page.locator(".dropdown-launch-buttons a.dropdown-item")
    launch.first.wait_for(state="visible")
    hrefs = [a.get_attribute("href") for a in launch.all()]
    for provider in ("mybinder.org", "colab.research.google.com", "/hub/user-redirect/git-pull"):
        assert any(provider in h for h in hrefs), f"no {provider} launch link: {hrefs}"
    page.locator(".dropdown-download-buttons button.dropdown-toggle").hover()
    notebook_link = page.locator(".dropdown-download-buttons a.btn-download-notebook-button")
    if notebook_link.count() == 0:  # an .ipynb page: its source is the notebook
        notebook_link = page.locator(".dropdown-download-buttons a.btn-download-source-button")
    href = notebook_link.first.evaluate("a => a.href")
    assert href.endswith(".ipynb"), href
    response = page.request.get(href)
    assert response.status == 200, f"{href}: HTTP {response.status}"
    nb = response.json()
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) == page.locator("div.cell").count(), \
        f"{href} has {len(code)} code cells, the page shows {page.locator('div.cell').count()}"
    # Outputs are not required: with `execute_notebooks: cache`, myst-nb 1.4 writes
    # the notebook it read (without the cached outputs) when it reuses the cache.
    assert not v.problems(), v.problems()


def test_the_checks_catch_a_broken_page(visit, tmp_path):
    """Test of the test: a CDN script, a console error, an exception, a missing image
    and an untypeset formula are all reported."""
    (tmp_path / "bad.html").write_text(
        "<!DOCTYPE html><html><head>"
        "<script src='https://cdn.example.org/mathjax/tex-chtml.js'></script>"
        "<script>console.error('boom')</script><script>undefinedFunction()</script>"
        "</head><body><img src='missing.png'><span class='math'>\\(x^2\\)</span></body></html>")
    with serve(tmp_path) as base:
        v = visit("bad.html", base=base)
        problems = "\n".join(v.problems())
        assert "request to another host: https://cdn.example.org/mathjax/tex-chtml.js" in problems
        assert "console error: boom" in problems
        assert "uncaught exception:" in problems and "undefinedFunction" in problems
        assert "missing.png (HTTP 404)" in problems
        assert broken_images(v.page) == ["missing.png"]
        math = untypeset_math(v.page)
        assert math["total"] == 1 and len(math["untypeset"]) == 1 and not math["mathjax"]
