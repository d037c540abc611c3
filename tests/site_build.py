"""The built book, shared by the site tests (test_site.py, test_browser.py).

`built_site()` returns the directory of the rendered HTML, building it at most
once per test run:

1. COURSE_SITE_DIR, if set, names a site built elsewhere (for example
   `jupyter-book build --path-output /tmp/x .` puts it in /tmp/x/_build/html);
   it is used as it is, without a freshness check.
2. Otherwise REPO/_build/html, the README's build (CI builds it right before
   pytest), is used if it is newer than every source file.
3. Otherwise the book is built with the README's command,
   `jupyter-book build --warningiserror --keep-going .`, and a failed build
   fails the tests that need the site, with the end of the build log.

It also reads _toc.yml: `toc_pages()` lists the pages in reading order.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SITE = REPO / "_build" / "html"
BUILD_COMMAND = ["jupyter-book", "build", "--warningiserror", "--keep-going", "."]

# What the rendered site is made from: a change to any of these makes a build stale.
SOURCE_FILES = ["_config.yml", "_toc.yml"]
SOURCE_DIRS = ["book", "autograder"]
IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


class SiteBuildError(RuntimeError):
    """The book did not build: the message holds the end of the build log."""


def toc_pages() -> list[str]:
    """Docnames of _toc.yml in reading order (root first), e.g. 'book/intro'."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf8"))
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    return [str(Path(p).with_suffix("")) if Path(p).suffix in {".md", ".ipynb"} else p
            for p in pages]


def newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCE_FILES:
        p = REPO / name
        if p.exists():
            newest = max(newest, p.stat().st_mtime)
    for d in SOURCE_DIRS:
        for p in (REPO / d).rglob("*"):
            if p.is_file() and not IGNORED_PARTS.intersection(p.parts):
                newest = max(newest, p.stat().st_mtime)
    return newest


# Left by a failed build() so that its (partial) site is not taken for a good one.
FAILED_MARKER = REPO / "_build" / ".site_build_failed"


def site_is_fresh(site: Path) -> bool:
    # searchindex.js is rewritten by every build, so its mtime dates the build.
    stamp = site / "searchindex.js"
    if not ((site / "index.html").exists() and stamp.exists()):
        return False
    built = stamp.stat().st_mtime
    if FAILED_MARKER.exists() and FAILED_MARKER.stat().st_mtime >= built:
        return False
    return built >= newest_source_mtime()


def _jupyter_book() -> str:
    # Prefer the one beside the running interpreter (the project's venv).
    beside = Path(sys.executable).parent / "jupyter-book"
    return str(beside) if beside.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def build(site: Path = DEFAULT_SITE) -> Path:
    """Build the book with the README's command; raise SiteBuildError if it fails."""
    log = REPO / "_build" / "site_build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf8") as out:
        result = subprocess.run([_jupyter_book(), *BUILD_COMMAND[1:]], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0 or not (site / "index.html").exists():
        FAILED_MARKER.touch()
        tail = "\n".join(log.read_text(encoding="utf8", errors="replace").splitlines()[-60:])
        raise SiteBuildError(
            f"`{' '.join(BUILD_COMMAND)}` failed (exit {result.returncode}); "
            f"full log in {log}. Last lines:\n{tail}")
    FAILED_MARKER.unlink(missing_ok=True)
    return site


_outcome: Path | SiteBuildError | None = None


def built_site() -> Path:
    """Directory of the rendered HTML (see the module docstring).

    The outcome, a site or a failed build, is kept for the rest of the run so
    the book is built (or fails to build) once, not once per test.
    """
    global _outcome
    if _outcome is None:
        try:
            _outcome = _locate_or_build()
        except SiteBuildError as err:
            _outcome = err
    if isinstance(_outcome, SiteBuildError):
        raise _outcome
    return _outcome


def _locate_or_build() -> Path:
    override = os.environ.get("COURSE_SITE_DIR")
    if override:
        site = Path(override).resolve()
        if not (site / "index.html").exists():
            raise SiteBuildError(f"COURSE_SITE_DIR={override} holds no built site (no index.html)")
        return site
    DEFAULT_SITE.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (pytest-xdist workers share the repository).
    with open(DEFAULT_SITE.parent / ".site_build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if site_is_fresh(DEFAULT_SITE):
                return DEFAULT_SITE
            return build(DEFAULT_SITE)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
