"""`python -m autograder.grade_class`: a whole class graded in parallel, on the sandboxed
path, into nbgrader's own gradebook.

One small class of the attention-scores assignment (correct, blank, a classic mistake,
a forged verdict, a file that is not a notebook) is graded twice: by the stock
`nbgrader autograde` and by the parallel command. Both must leave the same scores and
comments in the gradebook, nbgrader's feedback and export must work on the result, a
rerun must skip what is graded, and `--student X --regrade` must touch X only. The same
is checked with a PostgreSQL gradebook (a throwaway server started here) and on a real
Dask cluster (a scheduler and two workers on 127.0.0.1), one of whose workers is killed
while it grades.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hostile import HOSTILE
from mutants import mutants_for
from nbgrader_harness import REPO, Course, read_notebook, solution_code, submitted_notebooks

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap is not installed (apt-get install bubblewrap)"),
              pytest.mark.xdist_group("grade-class")]  # module fixtures: one PostgreSQL, one cluster

A, NB = "attention-scores", "attention_scores"
LIMITS = ("--Execute.timeout=30", "--SandboxedExecute.notebook_timeout=120")
STUDENTS = ("correct", "blank", "k-not-transposed", "forge-numpy", "snoop", "invalid-json")


def _submit(course: Course, student: str, kind: str | None = None) -> None:
    """Hand in a notebook of the given kind (default: the student id names the kind)."""
    kind = kind or student
    if kind == "correct":
        course.submit_solution(student, A, NB)
    elif kind == "blank":
        course.submit(student, A, NB)
    elif kind in {m.name for m in mutants_for(A)}:
        mutant = next(m for m in mutants_for(A) if m.name == kind)
        course.submit_solution(student, A, NB, mutant.replace)
    else:
        hostile = next(h for h in HOSTILE if h.name == kind)
        release = json.loads(course.release_path(A, NB).read_text())
        path = course.submission_path(student, A, NB)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(hostile.make(solution_code(A, NB), release))


def grade_class(course: Course, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """The documented command, run from the course root."""
    proc = subprocess.run([sys.executable, "-m", "autograder.grade_class", A, *args, *LIMITS],
                          cwd=course.root, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if check and proc.returncode:
        raise AssertionError(f"grade_class failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-5000:]}")
    return proc


def gradebook_state(db_url: str) -> dict:
    """{student: {grade_id: (auto_score, max_score, needs_manual_grade, auto_comment)}}."""
    state = {}
    for student, nb in submitted_notebooks(db_url, A):
        comments = {c.name: c.auto_comment for c in nb.comments}
        for g in nb.grades:
            state.setdefault(student, {})[g.name] = (
                g.auto_score, g.max_score, g.needs_manual_grade, comments.get(g.name))
    return state


def sqlite_url(course: Course) -> str:
    return f"sqlite:///{course.root / 'gradebook.db'}"


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """(stock course, parallel course, the parallel run), with the same submissions."""
    base = tmp_path_factory.mktemp("grade-class")
    stock = Course.create(base / "stock", [A])
    for student in STUDENTS:
        _submit(stock, student)
    shutil.copytree(stock.root, base / "parallel")
    parallel = Course(base / "parallel", [A])
    run = grade_class(parallel, "--workers", "2")
    stock.nbgrader("autograde", A, "--create", "--force", *LIMITS, check=False)
    return stock, parallel, run


def test_parallel_equals_stock_autograde(classes):
    stock, parallel, run = classes
    assert run.returncode == 1, "a file that is not a notebook must make the command fail"
    assert "FAILED attention-scores/invalid-json" in run.stderr, run.stderr[-3000:]
    assert "graded 5, skipped 0, failed 1" in run.stderr, run.stderr[-3000:]
    want, got = gradebook_state(sqlite_url(stock)), gradebook_state(sqlite_url(parallel))
    assert got == want
    assert got["correct"]["test_softmax_hidden"][0] == 2.5
    assert got["k-not-transposed"]["test_dot_product_scores_hidden"][0] == 0
    assert got["forge-numpy"]["test_softmax_public"][0] == 0
    # the workers' kernels (forked by their fork servers) hide the same files as stock's
    snoop = "".join(o.get("text", "") for c in read_notebook(
        parallel.root / "autograded" / "snoop" / A / f"{NB}.ipynb").cells for o in c.get("outputs", []))
    assert "hidden" in snoop and "visible" not in snoop.replace("invisible", ""), snoop
    assert "WROTE" not in snoop and "write refused" in snoop, snoop
    for student in STUDENTS[:-1]:  # the autograded notebooks: same cells, verdicts by the grader
        a = read_notebook(stock.root / "autograded" / student / A / f"{NB}.ipynb")
        b = read_notebook(parallel.root / "autograded" / student / A / f"{NB}.ipynb")
        assert [c.source for c in a.cells] == [c.source for c in b.cells]
        assert ([[o.get("ename") for o in c.get("outputs", [])] for c in a.cells if c.cell_type == "code"]
                == [[o.get("ename") for o in c.get("outputs", [])] for c in b.cells if c.cell_type == "code"])
    # nbgrader's own tools read the result unchanged
    parallel.nbgrader("generate_feedback", A)
    assert (parallel.root / "feedback" / "correct" / A / f"{NB}.html").exists()
    rows = {r["student_id"]: r["score"] for r in parallel.export_csv()}
    assert rows == {r["student_id"]: r["score"] for r in stock.export_csv()}
    assert float(rows["correct"]) == 10.0


def test_rerun_skips_and_regrades_one_student_only(classes):
    _, parallel, _ = classes
    before = gradebook_state(sqlite_url(parallel))
    run = grade_class(parallel, "--workers", "2")
    assert "graded 0, skipped 5, failed 1" in run.stderr, run.stderr[-3000:]  # invalid-json again
    mtimes = {s: (parallel.root / "autograded" / s / A / f"{NB}.ipynb").stat().st_mtime_ns
              for s in STUDENTS[:-1]}
    from nbgrader.api import Gradebook

    cell = ("test_dot_product_scores_public", NB, A, "k-not-transposed")
    with Gradebook(sqlite_url(parallel)) as gb:  # an instructor's manual grade, via the formgrader
        gb.find_grade(*cell).manual_score = 0.25
        gb.db.commit()
    run = grade_class(parallel, "--student", "k-not-transposed", "--regrade", check=True)
    assert "graded 1, skipped 0, failed 0" in run.stderr, run.stderr[-3000:]
    with Gradebook(sqlite_url(parallel)) as gb:  # kept, and still flagged for a human
        grade = gb.find_grade(*cell)
        assert (grade.manual_score, grade.needs_manual_grade) == (0.25, True)
        grade.manual_score, grade.needs_manual_grade = None, False
        gb.db.commit()
    after = {s: (parallel.root / "autograded" / s / A / f"{NB}.ipynb").stat().st_mtime_ns
             for s in STUDENTS[:-1]}
    assert after["k-not-transposed"] != mtimes["k-not-transposed"]
    assert {s: t for s, t in after.items() if s != "k-not-transposed"} == \
           {s: t for s, t in mtimes.items() if s != "k-not-transposed"}
    assert gradebook_state(sqlite_url(parallel)) == before


def test_bad_requests_get_a_clear_message(classes):
    _, parallel, _ = classes
    proc = subprocess.run([sys.executable, "-m", "autograder.grade_class", "no-such-assignment", *LIMITS],
                          cwd=parallel.root, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "not in the gradebook" in proc.stderr and A in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    port = _free_port()  # nothing listens there
    proc = subprocess.run([sys.executable, "-m", "autograder.grade_class", A, "--scheduler",
                           f"tcp://127.0.0.1:{port}", "--regrade", "--student", "correct", *LIMITS],
                          cwd=parallel.root, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s"))
    assert proc.returncode != 0
    assert "could not reach the Dask scheduler" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------------------ PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1, run as the `postgres` user when we are
    root (the server refuses to run as root); yields a database URL."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2")
    data = Path(tempfile.mkdtemp(prefix="course-pg-", dir="/tmp"))
    os.chmod(data, 0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    cluster = data / "cluster"
    subprocess.run([*as_user, initdb, "-D", str(cluster), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, pg_ctl, "-D", str(cluster), "-l", str(data / "log"), "-w", "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE gradebook")
        conn.close()
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3: name the driver installed.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(cluster), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_gradebook(classes, postgres, tmp_path):
    stock = classes[0]
    root = tmp_path / "course"
    root.mkdir()
    config = (REPO / "nbgrader_config.py").read_text() + f"\nc.CourseDirectory.db_url = {postgres!r}\n"
    (root / "nbgrader_config.py").write_text(config)
    shutil.copytree(REPO / "solutions" / A, root / "solutions" / A)
    course = Course(root, [A])
    course.nbgrader("db", "assignment", "add", A)
    course.nbgrader("generate_assignment", A, "--force")
    students = ("correct", "blank", "k-not-transposed")
    for student in students:
        _submit(course, student)
    run = grade_class(course, "--workers", "2", check=True)
    assert "graded 3, skipped 0, failed 0" in run.stderr, run.stderr[-3000:]
    assert not (root / "gradebook.db").exists(), "the SQLite default was used instead of db_url"
    want = gradebook_state(sqlite_url(stock))
    assert gradebook_state(postgres) == {s: want[s] for s in students}
    rows = {r["student_id"]: r["score"] for r in course.export_csv()}
    assert rows == {r["student_id"]: r["score"] for r in stock.export_csv() if r["student_id"] in students}


# ------------------------------------------------------------------ Dask
def _descendants(pid: int) -> list[int]:
    from autograder.sandbox import descendants

    return descendants(pid)


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1 (no nanny, so that
    killing a worker kills it for good). Yields (address, [worker Popen])."""
    pytest.importorskip("distributed")
    dask = str(Path(sys.executable).parent / "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    logs = []

    def start(*args):
        log = open(tmp_path / f"dask-{len(procs)}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([dask, *args], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                      env=dict(os.environ, PYTHONWARNINGS="ignore")))
        return procs[-1]

    start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    _wait_for_port(port)
    workers = [start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                     "--host", "127.0.0.1", "--name", f"w{i}") for i in range(2)]
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    try:
        yield address, workers
    finally:
        for proc in reversed(procs):
            leftovers = _descendants(proc.pid)
            proc.kill()
            proc.wait(timeout=30)
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for log in logs:
            log.close()


def test_dask_cluster_survives_a_worker_killed_mid_grade(classes, dask_cluster, tmp_path):
    stock = classes[0]
    address, workers = dask_cluster
    course = Course.create(tmp_path / "course", [A])
    kinds = ("correct", "blank", "k-not-transposed", "forge-numpy") * 2
    students = [f"{kind}-{i}" for i, kind in enumerate(kinds)]
    for student, kind in zip(students, kinds):
        _submit(course, student, kind)
    proc = subprocess.Popen([sys.executable, "-m", "autograder.grade_class", A, "--scheduler", address,
                             *LIMITS], cwd=course.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    # Kill worker 0 while one of its sandboxed kernels is running (it is grading).
    victim, kernels, grading = workers[0], {}, False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        kernels = {p: _start_time(p) for p in _descendants(victim.pid) if _is_kernel(p)}
        # nbgrader works in the submission's private course while it grades it
        grading = bool(kernels) and "grade-class-submission-" in _cwd(victim.pid)
        if grading:
            break
        time.sleep(0.05)
    assert grading, "worker 0 was never seen grading"
    # what the killed worker leaves behind in /tmp (its private course, the kernel's
    # folder): removed at the end
    litter = {folder for p in kernels for folder in _kernel_folders(p)}
    litter |= set(Path(tempfile.gettempdir()).glob("grade-class-submission-*"))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    _all_graded_after_the_kill(proc, litter, len(students))
    # the killed worker's kernels died with it (its fork server read end-of-file and
    # exited, and their parent-death signals followed)
    time.sleep(1)
    survivors = [p for p, started in kernels.items() if started and _start_time(p) == started]  # pids get reused
    assert not survivors, "the dead worker's kernel outlived it"
    want = gradebook_state(sqlite_url(stock))
    got = gradebook_state(sqlite_url(course))
    assert got == {s: want[k] for s, k in zip(students, kinds)}


def test_local_pool_survives_a_worker_killed_mid_grade(classes, tmp_path):
    """A local worker killed while it grades (the OOM killer, say): the pool is rebuilt
    and every submission is graded once, with stock's scores."""
    stock = classes[0]
    course = Course.create(tmp_path / "course", [A])
    kinds = ("correct", "k-not-transposed", "blank", "forge-numpy")
    students = [f"{kind}-{i}" for i, kind in enumerate(kinds)]
    for student, kind in zip(students, kinds):
        _submit(course, student, kind)
    proc = subprocess.Popen([sys.executable, "-m", "autograder.grade_class", A, "--workers", "2", *LIMITS],
                            cwd=course.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    victim, deadline = None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        # the workers (children of multiprocessing's fork server) work in a private course
        victim = next((p for p in _descendants(proc.pid) if "grade-class-submission-" in _cwd(p)), None)
        time.sleep(0.05)
    assert victim is not None, "no worker was seen grading"
    litter = {Path(_cwd(victim))}
    os.kill(victim, signal.SIGKILL)
    _all_graded_after_the_kill(proc, litter, len(students))
    want = gradebook_state(sqlite_url(stock))
    assert gradebook_state(sqlite_url(course)) == {s: want[k] for s, k in zip(students, kinds)}


def _all_graded_after_the_kill(proc: subprocess.Popen, litter: set, count: int) -> None:
    """The command, one of whose workers was killed, still grades all `count`
    submissions; what the dead worker left in /tmp is removed."""
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        for path in litter:
            shutil.rmtree(path, ignore_errors=True)
    assert proc.returncode == 0, err[-5000:]
    assert f"graded {count}, skipped 0, failed 0" in err, err[-3000:]


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


def _is_kernel(pid: int) -> bool:
    """The kernel's Python itself: a fresh one (not bubblewrap on its way to start it: a
    worker killed in the instant between fork and bwrap's PR_SET_PDEATHSIG would leave
    it orphaned), or one forked by the fork server (it keeps the server's command line
    and works in a kernel- folder of the server's)."""
    words = _cmdline(pid)
    if not words or "python" not in Path(words[0]).name:
        return False
    return "ipykernel_launcher" in words or ("autograder.kernel_forkserver" in words
                                             and "/kernel-" in _cwd(pid))


def _kernel_folders(pid: int) -> set[Path]:
    """A kernel's working folder, and a forked kernel's fork server folder."""
    folders = {Path(w).parent for w in _cmdline(pid) if w.endswith("kernel.json")}
    if "/kernel-" in _cwd(pid):
        folders |= {Path(_cwd(pid)), Path(_cwd(pid)).parent}
    return folders


def test_template_gradebook_is_stamped_as_nbgrader_stamps_it(tmp_path):
    """The empty gradebook made in-process carries the schema version that nbgrader's
    own `alembic` call gives a new gradebook."""
    import sqlite3

    from nbgrader.api import get_alembic_version

    from autograder.grade_class import Course as Coordinator

    course = Course.create(tmp_path / "course", [A])
    path = tmp_path / "empty.db"
    path.write_bytes(Coordinator(course.root, {}).empty_gradebook())
    with sqlite3.connect(path) as db:
        assert db.execute("select version_num from alembic_version").fetchall() == [(get_alembic_version(),)]
        assert db.execute("select count(*) from assignment").fetchone() == (0,)
