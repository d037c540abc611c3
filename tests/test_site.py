"""Static checks of the built site: what a reader (or a student) can fetch from it.

The central one: exercise pages are the student versions. No solution code, no
hidden-test code and no nbgrader marker may appear anywhere in the published
site: not in the HTML, not in the downloadable notebooks (_sources, _downloads),
not in the search index. Solution lines are taken from the instructor's
notebooks in solutions/; a line counts as leaked only if it is not also in the
student versions in book/exercises (the scaffold lines are shared on purpose).
"""
from __future__ import annotations

import html
import json
import re
import warnings
from pathlib import Path

import pytest

from site_build import REPO, SiteBuildError, built_site, toc_pages


# Module-scoped work (executions, builds) happens once: keep the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("site")

# nbgrader's region markers: the student version never shows them.
FORBIDDEN_MARKERS = [
    "BEGIN SOLUTION", "END SOLUTION",
    "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
    "BEGIN MARK SCHEME", "END MARK SCHEME",
]
# Pages written for instructors may name the markers to explain them; they are
# still scanned for solution code.
PAGES_ALLOWED_TO_NAME_MARKERS = {"book/instructors"}

# Code a chapter prints on purpose (book/*.md, book/*.py) is not counted as a leak,
# only reported (test_chapters_overlap_with_solutions). False: count it as a leak.
CHAPTER_CODE_IS_PUBLIC = True

MIN_LINE_LENGTH = 20  # shorter lines ("return out", "x = x + 1") prove nothing
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".svg", ".woff", ".woff2",
                   ".ttf", ".eot", ".otf", ".pdf", ".zip", ".gz", ".pickle", ".doctree", ".inv"}
SKIP_DIRS = {"mathjax"}  # vendored MathJax: 24 MB of third-party JavaScript

TAG = re.compile(r"<[^>]+>")
SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    return SPACES.sub(" ", text).strip()


# ---------------------------------------------------------------- notebooks --
def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf8")).get("cells", [])


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _regions(source: str, begin: str, end: str) -> list[str]:
    """Lines between `### BEGIN X` and `### END X` marker lines (markers excluded)."""
    lines, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def secret_lines(notebook: Path) -> list[str]:
    """Code lines a student must not see: solution cells and hidden-test regions."""
    lines = []
    for cell in _cells(notebook):
        if cell.get("cell_type") != "code":
            continue
        src = _source(cell)
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if nbgrader.get("solution"):
            # The whole cell: nbgrader replaces a marker-less solution cell whole,
            # and the scaffold lines it keeps are in the student version anyway.
            lines += src.splitlines()
        lines += _regions(src, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
        lines += _regions(src, "BEGIN SOLUTION", "END SOLUTION")
    return lines


def is_trivial(line: str) -> bool:
    s = line.strip()
    return (len(s) < MIN_LINE_LENGTH or s.startswith("#") or s.startswith("import ")
            or (s.startswith("from ") and " import " in s)
            or s in {'"""', "'''"} or "YOUR CODE HERE" in s
            or s.startswith("raise NotImplementedError"))


def student_text(exercises_dir: Path) -> str:
    """Everything in the student versions, whitespace-normalised into one text: a line
    found here is public, even where the student version wraps it over two lines (a
    hint in the instructions quoting the code to write)."""
    parts = []
    for nb in sorted(exercises_dir.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts:
            continue
        parts += [_source(cell) for cell in _cells(nb)]
    return normalise(" ".join(parts))


def chapter_text(book_dir: Path) -> str:
    """The chapters' own sources (book/**/*.md, book/*.py), normalised line by line.

    Code the authors publish in a chapter is public by their choice (the chapters
    teach the same computations the exercises ask for); such overlaps are
    reported by test_chapters_overlap_with_solutions, not counted as leaks.
    """
    parts = []
    for path in sorted([*book_dir.rglob("*.md"), *book_dir.glob("*.py")]):
        if "exercises" in path.relative_to(book_dir).parts or ".ipynb_checkpoints" in path.parts:
            continue
        parts += [normalise(line) for line in path.read_text(encoding="utf8").splitlines()]
    return "\n".join(parts)


def leak_candidates(solutions_dir: Path, exercises_dir: Path,
                    also_public: str = "") -> dict[str, str]:
    """{normalised secret line: notebook it comes from} for non-trivial secret lines
    that neither the student versions nor `also_public` contain."""
    public = student_text(exercises_dir) + "\n" + also_public
    found = {}
    for nb in sorted(solutions_dir.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts:
            continue
        for line in secret_lines(nb):
            if is_trivial(line):
                continue
            key = normalise(line)
            if key not in public:
                found.setdefault(key, str(nb.relative_to(solutions_dir)))
    return found


# --------------------------------------------------------------------- site --
def site_files(site: Path):
    for path in sorted(site.rglob("*")):
        if path.is_file() and path.suffix.lower() not in BINARY_SUFFIXES \
                and not SKIP_DIRS.intersection(path.relative_to(site).parts):
            yield path


def readable_text(path: Path) -> str:
    """The text a reader sees in a file: HTML without tags and entities, a notebook's strings."""
    raw = path.read_text(encoding="utf8", errors="replace")
    if path.suffix == ".html":
        # Pygments wraps every token in a <span>: drop the tags, keep the text.
        return html.unescape(TAG.sub("", raw)) + "\n" + raw
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(raw)
        except ValueError:
            return raw
        strings = []

        def collect(node):
            if isinstance(node, str):
                strings.append(node)
            elif isinstance(node, list):
                if all(isinstance(x, str) for x in node):
                    strings.append("".join(node))
                else:
                    for x in node:
                        collect(x)
            elif isinstance(node, dict):
                for x in node.values():
                    collect(x)

        collect(nb)
        return "\n".join(strings)
    return raw


def docname_of(site: Path, path: Path) -> str | None:
    """The page a file belongs to (its HTML or its source copy), else None."""
    rel = path.relative_to(site).as_posix()
    if rel.startswith("_sources/"):
        rel = rel[len("_sources/"):]
    for suffix in (".html", ".md.txt", ".ipynb.txt", ".md", ".ipynb", ".txt"):
        if rel.endswith(suffix):
            return rel[: -len(suffix)]
    return None


def find_leaks(site: Path, secrets: dict[str, str]) -> list[str]:
    problems = []
    for path in site_files(site):
        text = readable_text(path)
        rel = path.relative_to(site).as_posix()
        if docname_of(site, path) not in PAGES_ALLOWED_TO_NAME_MARKERS:
            for marker in FORBIDDEN_MARKERS:
                if marker.lower() in text.lower():
                    problems.append(f"{rel}: contains nbgrader marker {marker!r}")
        if secrets:
            flat = normalise(text)
            for line, notebook in secrets.items():
                if line in flat:
                    problems.append(f"{rel}: contains a solution/hidden-test line of "
                                    f"solutions/{notebook}: {line!r}")
    return problems


# -------------------------------------------------------------------- tests --
@pytest.fixture(scope="module")
def site() -> Path:
    try:
        return built_site()
    except SiteBuildError as err:
        pytest.fail(str(err), pytrace=False)


def test_every_toc_page_is_built(site):
    missing = [p for p in toc_pages() if not (site / f"{p}.html").exists()]
    assert not missing, f"pages of _toc.yml with no HTML in {site}: {missing}"


def test_no_nbgrader_marker_or_solution_code_anywhere(site):
    secrets = leak_candidates(REPO / "solutions", REPO / "book" / "exercises",
                              also_public=chapter_text(REPO / "book") if CHAPTER_CODE_IS_PUBLIC else "")
    problems = find_leaks(site, secrets)
    assert not problems, "the built site shows instructor material:\n" + "\n".join(problems[:40])


def test_chapters_overlap_with_solutions():
    """Not a leak (the chapter sources are the authors' own text), but worth knowing:
    lines of solution cells / hidden tests that a chapter prints verbatim."""
    taught = chapter_text(REPO / "book")
    shared = {line: nb for line, nb in
              leak_candidates(REPO / "solutions", REPO / "book" / "exercises").items()
              if line in taught}
    if shared:
        warnings.warn(UserWarning(
            f"{len(shared)} solution line(s) also appear verbatim in chapters: "
            + "; ".join(f"{nb}: {line!r}" for line, nb in sorted(shared.items(), key=lambda x: x[1]))))


def test_solution_notebooks_are_checked(site):
    """Says how much the leak check covered; skips (not fails) before any solution exists."""
    notebooks = [p for p in (REPO / "solutions").rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts]
    if not notebooks:
        pytest.skip("no solutions/**/*.ipynb yet: only the nbgrader markers were checked")
    secrets = leak_candidates(REPO / "solutions", REPO / "book" / "exercises")
    assert secrets, ("solution notebooks exist but none of their solution/hidden-test lines "
                     "is distinctive: the leak check would prove nothing")


def test_leak_scanner_catches_a_leak(tmp_path):
    """The scanner itself: a hidden-test line in highlighted HTML, in a downloadable
    notebook and in a marker must all be reported; the shared scaffold must not."""
    sol, ex, site = tmp_path / "solutions" / "a", tmp_path / "ex" / "a", tmp_path / "site"
    for d in (sol, ex, site / "_sources"):
        d.mkdir(parents=True)

    def nb(cells):
        return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})

    scaffold = "def attention(query, key, value):"
    secret = "weights = torch.softmax(scores / math.sqrt(d_k), dim=-1)"
    hidden = "check_attention(attention, hidden=True, seed=1234)"
    solution_cell = {"cell_type": "code", "metadata": {"nbgrader": {"solution": True}},
                     "source": f"{scaffold}\n    ### BEGIN SOLUTION\n    {secret}\n"
                               "    ### END SOLUTION\n"}
    test_cell = {"cell_type": "code", "metadata": {"nbgrader": {"grade": True}},
                 "source": f"check_attention(attention)\n### BEGIN HIDDEN TESTS\n{hidden}\n"
                           "### END HIDDEN TESTS\n"}
    (sol / "a.ipynb").write_text(nb([solution_cell, test_cell]))
    student = {"cell_type": "code", "metadata": {},
               "source": f"{scaffold}\n    # YOUR CODE HERE\n    raise NotImplementedError()"}
    (ex / "a.ipynb").write_text(nb([student]))

    secrets = leak_candidates(tmp_path / "solutions", tmp_path / "ex")
    assert normalise(secret) in secrets and normalise(hidden) in secrets
    assert normalise(scaffold) not in secrets

    (site / "clean.html").write_text(f"<pre><span class='k'>def</span> attention(query, key, value):</pre>")
    (site / "page.html").write_text(
        "<pre><span class='n'>weights</span> <span class='o'>=</span> "
        "<span class='n'>torch</span><span class='o'>.</span>softmax(scores / "
        "math.sqrt(d_k), dim<span class='o'>=</span><span class='o'>-</span>1)</pre>")
    (site / "_sources" / "a.ipynb").write_text(nb([test_cell]))
    (site / "searchindex.js").write_text('Search.setIndex({"terms": {"### END SOLUTION": 1}})')
    problems = "\n".join(find_leaks(site, secrets))
    assert "page.html: contains a solution" in problems
    assert "_sources/a.ipynb: contains a solution" in problems
    assert "_sources/a.ipynb: contains nbgrader marker 'BEGIN HIDDEN TESTS'" in problems
    assert "searchindex.js: contains nbgrader marker 'END SOLUTION'" in problems
    assert "clean.html" not in problems


def test_no_page_loads_anything_from_another_host(site):
    """Scripts, styles, images, fonts: all local (links to other sites are fine)."""
    asset = re.compile(r"<(?:script|img|iframe|source)\b[^>]*\bsrc=[\"']((?:https?:)?//[^\"']+)"
                       r"|<link\b(?=[^>]*\brel=[\"'](?:stylesheet|preload|icon|shortcut icon|"
                       r"modulepreload)[\"'])[^>]*\bhref=[\"']((?:https?:)?//[^\"']+)", re.I)
    problems = []
    for page in sorted(site.rglob("*.html")):
        for m in asset.finditer(page.read_text(encoding="utf8", errors="replace")):
            problems.append(f"{page.relative_to(site)}: {m.group(1) or m.group(2)}")
    assert not problems, "assets from other hosts:\n" + "\n".join(sorted(set(problems))[:40])


def test_mathjax_is_served_locally(site):
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    fonts = list((site / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert fonts, "MathJax's CHTML fonts are missing from _static/mathjax"
    page = site / "book" / "03_attention_scores.html"
    if page.exists():
        assert '_static/mathjax/tex-chtml.js' in page.read_text(encoding="utf8")


def test_no_thebe_left(site):
    """sphinx-thebe is off: its duplicated THEBE_JS_URL declaration was a console error."""
    offenders = [p.relative_to(site).as_posix() for p in site.rglob("*.html")
                 if "THEBE_JS_URL" in p.read_text(encoding="utf8", errors="replace")]
    assert not offenders, offenders


def test_logo_favicon_license_and_repository_links(site):
    intro = (site / f"{toc_pages()[0]}.html").read_text(encoding="utf8")
    assert "_static/logo.png" in intro and "_static/favicon.png" in intro
    assert (site / "_static" / "logo.png").stat().st_size > 0
    assert (site / "_static" / "favicon.png").stat().st_size > 0
    assert "CC BY 4.0" in intro and "MIT" in intro, "license notice missing from the footer"
    assert "github.com/" in intro, "repository button missing"
    license_text = (REPO / "LICENSE").read_text(encoding="utf8")
    assert "Attribution 4.0 International" in license_text and "MIT License" in license_text


@pytest.mark.parametrize("page", [p for p in toc_pages() if Path(p).name[:2].isdigit()])
def test_chapter_has_launch_and_ipynb_download(site, page):
    path = site / f"{page}.html"
    if not path.exists():
        pytest.fail(f"{page}.html was not built", pytrace=False)
    text = path.read_text(encoding="utf8")
    for provider in ("mybinder.org", "colab.research.google.com", "/hub/user-redirect/git-pull"):
        assert provider in text, f"{page}: no {provider} launch button"
    assert f"_sources/{page}.ipynb" in text, f"{page}: no .ipynb download"
    assert (site / "_sources" / f"{page}.ipynb").is_file(), f"{page}: the .ipynb download is missing"


@pytest.mark.parametrize("page", [p for p in toc_pages() if "/exercises/" in p])
def test_exercise_downloads_as_student_notebook(site, page):
    path = site / f"{page}.html"
    if not path.exists():
        pytest.fail(f"{page}.html was not built", pytrace=False)
    text = path.read_text(encoding="utf8")
    assert f"_sources/{page}.ipynb" in text, f"{page}: no .ipynb download"
    download = site / "_sources" / f"{page}.ipynb"
    student = REPO / f"{page}.ipynb"
    assert json.loads(download.read_text("utf8"))["cells"] == json.loads(student.read_text("utf8"))["cells"], \
        f"{page}: the downloadable notebook is not the released student version"
