"""Grade a whole class in parallel, on the same sandboxed path as `nbgrader autograde`.

    python -m autograder.grade_class attention-scores            # every submitted student
    python -m autograder.grade_class all --workers 4             # every assignment
    python -m autograder.grade_class attention-scores --student alice --regrade
    python -m autograder.grade_class all --scheduler tcp://10.0.0.5:8786   # a Dask cluster

Run from the course root (or pass --course DIR). Extra nbgrader settings are passed on
as on nbgrader's command line, e.g. `--Execute.timeout=60`.

The unit of work is one submission, (assignment, student). A worker grades it with the
stock machinery -- nbgrader's `Autograde` converter with the course's committed
`nbgrader_config.py`, hence `autograder.sandbox.SandboxedExecute` -- in a private,
throwaway course directory: the config, `solutions/<assignment>/`, the student's
submitted folder, and a private SQLite gradebook holding the assignment as the real
gradebook records it (made once per assignment). It sends back plain data (per-cell scores and
comments, late penalty, the autograded folder). The coordinating process is the only
writer of the real gradebook (SQLite or any `c.CourseDirectory.db_url`, e.g.
PostgreSQL) and of `autograded/`: concurrent grading never contends for the database,
and what nbgrader's own tools read (submissions, grades, comments, autograded
notebooks) is what `nbgrader autograde` would have written.

Workers are a local process pool (default), or Dask workers (`--scheduler ADDRESS`, or
`--scheduler local` for a LocalCluster). A worker that dies loses nothing: the pool is
rebuilt and its submissions are queued again (Dask reschedules them by itself). A
rerun skips submissions already graded (in the gradebook, with an autograded folder,
and the same timestamp) unless `--regrade` is given.

Speed comes from three places: several submissions at once; long-lived workers that
import nbgrader, torch and the checks once instead of once per `nbgrader autograde`
run; and kernels forked, each into a sandbox of its own, from a sandboxed Python that
imported NumPy and torch once per worker (`autograder/kernel_forkserver.py`), instead of
a fresh Python importing them for every notebook.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import fnmatch
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE = "nbgrader_config.py"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ------------------------------------------------------------------ config
def load_config(root: str | Path, overrides: dict | None = None):
    """The course's nbgrader_config.py as a traitlets Config, plus `overrides`
    ({"Class.trait": value})."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(root) / CONFIG_FILE
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config() if path.exists() else Config()
    for key, value in (overrides or {}).items():
        section, trait = key.rsplit(".", 1)
        target = config
        for part in section.split("."):
            target = target[part]
        target[trait] = value
    return config


def parse_overrides(words: list[str]) -> dict:
    """`--Class.trait=value` words (as nbgrader's command line takes them) -> dict."""
    found = {}
    for word in words:
        if not (word.startswith("--") and "=" in word and "." in word.split("=", 1)[0]):
            raise SystemExit(f"unknown argument {word!r} (settings look like --Execute.timeout=60)")
        key, text = word[2:].split("=", 1)
        try:
            found[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            found[key] = text
    return found


def private_coursedir(root: Path, overrides: dict | None):
    """Config and CourseDirectory of a private course in `root` with its own SQLite gradebook."""
    from nbgrader.coursedir import CourseDirectory

    config = load_config(root, overrides)
    if "fork_kernels" not in config.SandboxedExecute:
        # A worker grades notebook after notebook: kernels forked from a Python that has
        # imported torch once (autograder/kernel_forkserver.py). --SandboxedExecute.fork_kernels=False
        # starts a fresh sandboxed kernel per notebook, as `nbgrader autograde` does.
        config.SandboxedExecute.fork_kernels = True
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    return config, CourseDirectory(config=config)


def _files_under(base: Path, ignore: list[str] = ()) -> dict[str, bytes]:
    found = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if any(fnmatch.fnmatch(part, pattern) for part in rel.parts for pattern in ignore):
            continue
        if path.is_file() and not path.is_symlink():
            found[str(rel)] = path.read_bytes()
    return found


def _write_files(base: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = base / rel
        if not path.resolve().is_relative_to(base.resolve()):
            raise ValueError(f"refusing to write outside the course: {rel}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# ------------------------------------------------------------------ worker side
@dataclass
class Task:
    assignment: str
    student: str
    template: dict            # relative path -> bytes: config, solutions/<a>/, gradebook.db
    submission: dict          # relative path (inside the submitted folder) -> bytes
    overrides: dict = field(default_factory=dict)
    extension: datetime.timedelta | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.assignment, self.student


def quiet_worker() -> None:
    """A local worker's own output (kernels' banners, library warnings) is noise on the
    instructor's terminal: results and errors come back as data."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    warm_up()
    start_kernel_fork_server()


def start_kernel_fork_server() -> None:
    """Start this worker's kernel fork server (with the default hidden paths) now rather
    than at its first notebook. If it cannot start, grading says why, and falls back to
    fresh kernels."""
    if os.geteuid() == 0:
        from autograder.kernel_forkserver import shared_fork_server
        from autograder.sandbox import SandboxedExecute

        with contextlib.suppress(Exception):
            shared_fork_server(SandboxedExecute()._hidden())


def warm_up() -> None:
    """Import what every grading imports (nbgrader, torch, the checks) once per worker.

    Workers run one per core, so torch and NumPy use one thread each, here and (the
    variables are inherited) in the students' kernels: threads spinning for cores the
    other workers are using only slow everyone down."""
    import importlib
    import pkgutil

    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    import torch

    torch.set_num_threads(1)
    import nbgrader.converters  # noqa: F401
    import autograder.assignments as assignments
    import autograder.sandbox  # noqa: F401

    for module in pkgutil.iter_modules(assignments.__path__):
        importlib.import_module(f"autograder.assignments.{module.name}")
    lighten_nbgrader()


def lighten_nbgrader() -> None:
    """Two of nbgrader's fixed costs per notebook, made once per worker instead; neither
    changes what is computed or recorded (the tests compare gradebooks with stock's).

    - nbgrader opens the gradebook about ten times per notebook, and each `Gradebook()`
      inspects the database and runs `create_all` (a query per table) to create the
      tables if missing. In a worker, a gradebook file this process has already opened
      has them: later opens of it skip that step.
    - `CheckCellMetadata` (twice per notebook) validates each cell with
      `jsonschema.validate`, which first validates nbgrader's own schema, every call.
      Here the schema is checked once and its validator reused.
    Only grading workers call this (stock `nbgrader autograde` is left as it is)."""
    import jsonschema
    from nbgrader import api
    from nbgrader.nbgraderformat import common

    if getattr(api.Gradebook, "_lightened", False):
        return
    stock_init, opened = api.Gradebook.__init__, set()

    def gradebook_init(self, db_url, course_id="default_course", authenticator=None):
        if db_url not in opened or not db_url.startswith("sqlite:///"):
            stock_init(self, db_url, course_id, authenticator)
            opened.add(db_url)
            return
        self.engine = api.create_engine(db_url, echo=False, future=True)
        self.db = api.scoped_session(api.sessionmaker(autoflush=True, bind=self.engine, future=True))
        self.check_course(course_id=course_id)
        self.course_id, self.authenticator = course_id, authenticator

    api.Gradebook.__init__, api.Gradebook._lightened = gradebook_init, True

    validators: dict = {}

    class CachedSchemas:
        """`jsonschema` as nbgrader's metadata validator uses it, with one validator per schema."""
        ValidationError = jsonschema.ValidationError

        @staticmethod
        def validate(instance, schema):  # as jsonschema.validate, but for check_schema
            key = json.dumps(schema, sort_keys=True)
            if key not in validators:
                kind = jsonschema.validators.validator_for(schema)
                kind.check_schema(schema)
                validators[key] = kind(schema)
            error = jsonschema.exceptions.best_match(validators[key].iter_errors(instance))
            if error is not None:
                raise error

    common.jsonschema = CachedSchemas


def grade_submission(task: Task) -> dict:
    """Grade one submission in a private course directory; return plain data."""
    from nbgrader.api import Gradebook
    from nbgrader.converters import Autograde
    from nbgrader.utils import capture_log

    from autograder.sandbox import SandboxedExecute

    started = time.monotonic()
    warm_up()  # once per process (imports are cached); Dask workers get it here
    a, s = task.assignment, task.student
    result = {"assignment": a, "student": s, "host": socket.gethostname(), "pid": os.getpid(),
              "success": False, "error": None, "log": "", "notebooks": {}, "autograded": {}}
    timings_before = dict(SandboxedExecute.timings)
    with tempfile.TemporaryDirectory(prefix="grade-class-submission-") as tmp:
        root = Path(tmp)
        try:
            _write_files(root, task.template)
            _write_files(root / "submitted" / s / a, task.submission)
            config, coursedir = private_coursedir(root, task.overrides)
            if task.extension:
                with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
                    gb.update_or_create_student(s)
                    gb.update_or_create_submission(a, s, extension=task.extension)
            coursedir.assignment_id, coursedir.student_id = a, s
            app = Autograde(coursedir=coursedir, config=config)
            app.force, app.create_student = True, True
            outcome = capture_log(app)
            result["success"] = bool(outcome.get("success"))
            result["error"] = outcome.get("error")
            result["log"] = (outcome.get("log") or "")[-20000:]
            with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
                submission = gb.find_submission(a, s)
                result["timestamp"] = submission.timestamp
                for nb in submission.notebooks:
                    result["notebooks"][nb.name] = {
                        "late_penalty": nb.late_submission_penalty,
                        "grades": {g.name: {"auto_score": g.auto_score, "max_score": g.max_score,
                                            "cell_type": g.cell_type} for g in nb.grades},
                        "comments": {c.name: c.auto_comment for c in nb.comments},
                    }
            out = root / "autograded" / s / a
            if out.is_dir():
                result["autograded"] = _files_under(out)
        except Exception:
            result["success"] = False
            result["error"] = traceback.format_exc(limit=8)
    result["seconds"] = time.monotonic() - started
    result["timings"] = {k: v - timings_before.get(k, 0) for k, v in SandboxedExecute.timings.items()}
    return result


# ------------------------------------------------------------ the coordinator
class Course:
    """The real course: its config, gradebook and folders. The only writer."""

    def __init__(self, root: Path, overrides: dict):
        from nbgrader.coursedir import CourseDirectory

        # nbgrader runs the `alembic` executable by name when it creates a gradebook:
        # find it next to this Python even when the virtual environment is not activated.
        bindir = os.path.dirname(sys.executable)
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
        self.root, self.overrides = root.resolve(), overrides
        self.config = load_config(self.root, overrides)
        self.coursedir = CourseDirectory(config=self.config)
        self.coursedir.root = str(self.root)
        self.db_url = self.coursedir.db_url
        self.ignore = list(self.coursedir.ignore)

    def path(self, directory: str, student: str, assignment: str) -> Path:
        return Path(self.coursedir.format_path(directory, student, assignment))

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id)

    def assignments(self) -> list[str]:
        with self.gradebook() as gb:
            return [a.name for a in gb.assignments]

    def submitted_students(self, assignment: str) -> list[str]:
        base = Path(self.coursedir.format_path(self.coursedir.submitted_directory, ".", "."))
        return sorted(p.name for p in base.iterdir() if (p / assignment).is_dir()) if base.is_dir() else []

    def template(self, assignment: str) -> dict:
        """Files of a private course in which `assignment` is ready to autograde:
        nbgrader_config.py, the source folder (autograde copies its other files over the
        student's) and a gradebook holding the assignment as the real gradebook holds it:
        due date, notebooks and the cells `nbgrader generate_assignment` recorded, which
        are what stock autograde restores test cells from."""
        from nbgrader.api import Gradebook

        with self.gradebook() as gb:
            try:
                record = gb.find_assignment(assignment)
            except Exception:
                record = None
            if record is None or not record.notebooks:
                raise SystemExit(f"assignment {assignment!r} is not in the gradebook {self.db_url}: "
                                 f"run `nbgrader db assignment add {assignment}` and "
                                 f"`nbgrader generate_assignment {assignment}` first")
            duedate = record.duedate
            notebooks = [dict(
                name=nb.name, kernelspec=nb.kernelspec,
                grade_cells=[dict(name=c.name, max_score=c.max_score, cell_type=c.cell_type) for c in nb.grade_cells],
                solution_cells=[dict(name=c.name) for c in nb.solution_cells],
                task_cells=[dict(name=c.name, max_score=c.max_score, cell_type=c.cell_type) for c in nb.task_cells],
                source_cells=[dict(name=c.name, cell_type=c.cell_type, locked=c.locked, source=c.source,
                                   checksum=c.checksum) for c in nb.source_cells],
            ) for nb in record.notebooks]
        source = self.path(self.coursedir.source_directory, ".", assignment)
        rel = Path(os.path.relpath(source, self.root))
        with tempfile.TemporaryDirectory(prefix="grade-class-template-") as tmp:
            path = Path(tmp) / "gradebook.db"
            path.write_bytes(self.empty_gradebook())
            with Gradebook(f"sqlite:///{path}", self.coursedir.course_id) as gb:
                gb.update_or_create_assignment(assignment, duedate=duedate)
                for nb in notebooks:
                    gb.update_or_create_notebook(nb["name"], assignment, kernelspec=nb["kernelspec"])
                    for kind in ("grade_cell", "solution_cell", "task_cell", "source_cell"):
                        create = getattr(gb, f"update_or_create_{kind}")
                        for cell in nb[f"{kind}s"]:
                            create(cell.pop("name"), nb["name"], assignment, **cell)
            files = {CONFIG_FILE: (self.root / CONFIG_FILE).read_bytes(), "gradebook.db": path.read_bytes()}
        if source.is_dir():
            files.update({str(rel / k): v for k, v in _files_under(source, self.ignore).items()})
        return files

    _empty_gradebook: bytes | None = None

    def empty_gradebook(self) -> bytes:
        """An empty SQLite gradebook, made once. nbgrader stamps every new gradebook with
        its schema version, which it learns by running the `alembic` command (two
        seconds); the same answer comes from alembic's own API, in-process."""
        if self._empty_gradebook is None:
            from alembic.config import Config as AlembicConfig
            from alembic.script import ScriptDirectory
            from nbgrader import api
            from nbgrader.dbutil import _temp_alembic_ini

            with tempfile.TemporaryDirectory(prefix="grade-class-gradebook-") as tmp:
                path = Path(tmp) / "gradebook.db"
                with _temp_alembic_ini(f"sqlite:///{path}") as ini:
                    head = ScriptDirectory.from_config(AlembicConfig(ini)).get_current_head()
                stock, api.get_alembic_version = api.get_alembic_version, lambda: head
                try:
                    api.Gradebook(f"sqlite:///{path}", self.coursedir.course_id).close()
                finally:
                    api.get_alembic_version = stock
                self._empty_gradebook = path.read_bytes()
        return self._empty_gradebook

    def already_graded(self, gb, assignment: str, student: str) -> bool:
        try:
            submission = gb.find_submission(assignment, student)
        except Exception:
            return False
        if not self.path(self.coursedir.autograded_directory, student, assignment).is_dir():
            return False
        stamp = self.coursedir.get_existing_timestamp(
            str(self.path(self.coursedir.submitted_directory, student, assignment)))
        return stamp is None or submission.timestamp == stamp.replace(tzinfo=None)

    def extension(self, gb, assignment: str, student: str):
        try:
            return gb.find_submission(assignment, student).extension
        except Exception:
            return None

    def record(self, gb, result: dict) -> None:
        """Write one worker's result into the real gradebook and autograded/."""
        a, s = result["assignment"], result["student"]
        gb.update_or_create_student(s)
        stamp = self.coursedir.get_existing_timestamp(str(self.path(self.coursedir.submitted_directory, s, a)))
        gb.update_or_create_submission(a, s, **({"timestamp": stamp} if stamp else {}))
        try:
            for name, notebook in result["notebooks"].items():
                for cell, grade in notebook["grades"].items():
                    row = gb.find_grade(cell, name, a, s)
                    row.auto_score = grade["auto_score"]
                    # as SaveAutoGrades: a manual score or no automatic one needs a human
                    row.needs_manual_grade = row.manual_score is not None or grade["auto_score"] is None
                for cell, text in notebook["comments"].items():
                    gb.find_comment(cell, name, a, s).auto_comment = text
                gb.find_submission_notebook(name, a, s).late_submission_penalty = notebook["late_penalty"]
            gb.db.commit()
        except Exception:
            gb.db.rollback()
            raise
        out = self.path(self.coursedir.autograded_directory, s, a)
        staging = out.with_name(f".{out.name}.{uuid.uuid4().hex}")
        _write_files(staging, result["autograded"])
        if out.exists():
            shutil.rmtree(out)
        if result["autograded"]:
            staging.rename(out)
        else:
            shutil.rmtree(staging, ignore_errors=True)


def plan(course: Course, assignments: list[str], students: list[str] | None, regrade: bool,
         log) -> tuple[list[tuple], int]:
    """The (assignment, student, extension) to grade, and how many are skipped as
    already graded."""
    todo, skipped = [], 0
    with course.gradebook() as gb:
        known = {a.name for a in gb.assignments}
        unknown = [a for a in assignments if a not in known]
        if unknown:
            raise SystemExit(f"not in the gradebook ({course.db_url}): {', '.join(unknown)}; it has "
                             f"{', '.join(sorted(known)) or 'no assignments'}. Add one with `nbgrader db "
                             f"assignment add <id>` and `nbgrader generate_assignment <id>`.")
        for a in assignments:
            wanted = course.submitted_students(a)
            if not wanted:
                log(f"{a}: nothing submitted (no {course.path(course.coursedir.submitted_directory, '*', a)})")
            if students:
                for s in sorted(set(students) - set(wanted)):
                    log(f"no submission of {a} by {s}")
                wanted = [s for s in wanted if s in students]
            chosen = [s for s in wanted if regrade or not course.already_graded(gb, a, s)]
            skipped += len(wanted) - len(chosen)
            todo += [(a, s, course.extension(gb, a, s)) for s in chosen]
    return todo, skipped


def make_tasks(course: Course, todo: list[tuple]):
    """The tasks, in order. An assignment's template is made when its first submission
    comes, so workers grade the first assignment while the next templates are made."""
    templates = {}
    for a, s, extension in todo:
        if a not in templates:
            templates[a] = course.template(a)
        folder = course.path(course.coursedir.submitted_directory, s, a)
        yield Task(a, s, templates[a], _files_under(folder, course.ignore), course.overrides, extension)


# ---------------------------------------------------------------- executors
def local_context():
    """Workers are forked from a clean process (no inherited DB connections or threads)
    that has imported everything once: a new worker costs a fork, not four seconds."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autograder._preload_worker"])
    for name in THREAD_VARIABLES:  # read by NumPy and torch when that process imports them
        os.environ.setdefault(name, "1")
    return context


def start_local_pool(workers: int):
    """A process pool of long-lived workers, started now: they start their kernel fork
    servers while the coordinator prepares the submissions."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=local_context(), initializer=quiet_worker,
                               max_tasks_per_child=100)
    for _ in range(workers):
        pool.submit(os.getpid)  # a worker process starts for each
    return pool


def run_local(tasks, workers: int, on_result, pool=None, attempts: int = 3) -> None:
    """Grade `tasks` (any iterable; handed out as it yields) on a local pool of
    pre-warmed workers. If a worker dies, the pool breaks: it is rebuilt and every
    unfinished submission is queued again."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    tries: dict = {}
    pending = iter(tasks)
    while True:
        retry = []
        with pool or start_local_pool(workers) as current:
            pool = None
            futures = {}
            try:
                for task in pending:
                    futures[current.submit(grade_submission, task)] = task
            except BrokenProcessPool:  # a worker died while submissions were handed out
                retry += [task, *pending]
            for future in as_completed(futures):
                task = futures[future]
                try:
                    on_result(future.result())
                except BrokenProcessPool:
                    tries[task.key] = tries.get(task.key, 0) + 1
                    if tries[task.key] < attempts:
                        retry.append(task)
                    else:
                        on_result(_failed(task, f"a grading worker died {attempts} times on it"))
                except Exception:
                    on_result(_failed(task, traceback.format_exc(limit=4)))
        if not retry:
            return
        pending = iter(retry)


def run_dask(tasks: list[Task], address: str, workers: int, on_result) -> None:
    """Submissions as Dask tasks. When a worker dies, the scheduler reruns its tasks on
    another worker; results come back here to be written by this process only."""
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        address = cluster.scheduler_address
    try:
        try:
            client = Client(address)  # waits distributed.comm.timeouts.connect (30 s)
        except OSError as error:
            raise SystemExit(f"could not reach the Dask scheduler at {address}: {error}") from None
        with client:
            futures = {}
            for task in tasks:
                future = client.submit(grade_submission, task, pure=False, retries=1,
                                       key=f"grade-{task.assignment}-{task.student}-{uuid.uuid4().hex[:8]}")
                futures[future] = task
            for future in as_completed(futures):
                task = futures[future]
                try:
                    on_result(future.result())
                except Exception:
                    on_result(_failed(task, traceback.format_exc(limit=4)))
    finally:
        if cluster is not None:
            cluster.close()


def _failed(task: Task, error: str) -> dict:
    return {"assignment": task.assignment, "student": task.student, "success": False, "error": error,
            "notebooks": {}, "autograded": {}, "seconds": 0.0, "worker_failed": True}


# ---------------------------------------------------------------- progress
class Progress:
    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.failed, self.stream = total, 0, 0, stream
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def update(self, result: dict, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        status = (f"{self.done}/{self.total} graded, {self.failed} failed, "
                  f"{_clock(elapsed)} elapsed, ~{_clock(left)} left")
        score = sum(g["auto_score"] or 0 for nb in result["notebooks"].values() for g in nb["grades"].values()
                    if g["cell_type"] == "code")
        total = sum(g["max_score"] or 0 for nb in result["notebooks"].values() for g in nb["grades"].values()
                    if g["cell_type"] == "code")
        line = (f"{result['assignment']}/{result['student']}: "
                f"{'FAILED' if failed else f'{score:g}/{total:g}'} ({result.get('seconds', 0):.1f} s)")
        if self.tty:
            self.stream.write("\r\033[K" + (line + "\n" if failed else "") + status)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"[{status}] {line}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


# -------------------------------------------------------------------- main
def grade_class(root: Path, assignments: list[str], students: list[str] | None = None, *,
                workers: int | None = None, regrade: bool = False, scheduler: str | None = None,
                overrides: dict | None = None, stream=sys.stderr) -> dict:
    """Grade and record; returns {"graded", "skipped", "failed": [(a, s, error)], "seconds"}."""
    import warnings

    from sqlalchemy.exc import SAWarning

    # nbgrader's own session handling warns on every new submission; noise here
    warnings.filterwarnings("ignore", category=SAWarning)
    started = time.monotonic()
    if not scheduler:  # the workers' parent process imports while this one prepares
        from multiprocessing import forkserver

        local_context()
        forkserver.ensure_running()
    course = Course(Path(root), overrides or {})
    if assignments == ["all"]:
        assignments = course.assignments()
    workers = workers or os.cpu_count() or 1
    log = lambda text: print(text, file=stream, flush=True)  # noqa: E731
    todo, skipped = plan(course, assignments, students, regrade, log)
    workers = min(workers, len(todo)) or 1
    pool = start_local_pool(workers) if todo and not scheduler else None
    tasks = make_tasks(course, todo)
    log(f"grading {len(todo)} submission(s) of {', '.join(assignments)} with "
        f"{'Dask at ' + scheduler if scheduler else f'{workers} local worker(s)'}"
        f"{f'; {skipped} already graded (--regrade to grade them again)' if skipped else ''}")
    progress = Progress(len(todo), stream)
    failed, seconds, timings = [], [], []
    with course.gradebook() as gb:
        def on_result(result):
            error = None if result["success"] else (result.get("error") or "grading failed")
            if not result.get("worker_failed"):
                try:
                    course.record(gb, result)
                except Exception:
                    error = "recording failed:\n" + traceback.format_exc(limit=4)
            if error:
                failed.append((result["assignment"], result["student"], error))
            seconds.append(result.get("seconds", 0.0))
            timings.append(dict(result.get("timings") or {}, submission=result.get("seconds", 0.0)))
            progress.update(result, bool(error))

        if todo:
            if scheduler:
                run_dask(list(tasks), scheduler, workers, on_result)
            else:
                run_local(tasks, workers, on_result, pool)
    for a, s, error in failed:
        log(f"FAILED {a}/{s}:\n{error.strip()[-3000:]}")
    return {"graded": len(todo) - len(failed), "skipped": skipped, "failed": failed,
            "seconds": time.monotonic() - started, "seconds_per_submission": seconds, "timings": timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.grade_class", description=__doc__.split("\n\n")[0],
        epilog="Other arguments are nbgrader settings, e.g. --Execute.timeout=60.")
    parser.add_argument("assignment", nargs="+", help="assignment id(s), or `all`")
    parser.add_argument("--student", action="append", help="grade only this student (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: CPU count)")
    parser.add_argument("--regrade", action="store_true", help="grade again what is already graded")
    parser.add_argument("--scheduler", help="Dask scheduler address, or `local` for a LocalCluster")
    parser.add_argument("--course", default=".", help="course root (default: current directory)")
    args, rest = parser.parse_known_args(argv)
    summary = grade_class(Path(args.course), args.assignment, args.student, workers=args.workers,
                          regrade=args.regrade, scheduler=args.scheduler, overrides=parse_overrides(rest))
    print(f"graded {summary['graded']}, skipped {summary['skipped']}, failed {len(summary['failed'])} "
          f"in {summary['seconds']:.1f} s", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
