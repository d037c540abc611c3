"""Benchmark: stock sequential `nbgrader autograde` against `python -m autograder.grade_class`.

    .venv/bin/python benchmarks/grade_class.py                       # every assignment, 5 students each
    .venv/bin/python benchmarks/grade_class.py --assignments attention-scores --students 10 --workers 2

A synthetic class is made for every assignment (tests/nbgrader_harness.py's Course):
students cycle through correct, partly correct (the classic mistakes of
tests/mutants/), failing (the blank release), timing out (an infinite loop in the first
answer) and cheating (a forged verdict: NumPy's and torch's comparisons patched, over a
classic mistake). The same class is graded in two copies of the course, by the stock
command one assignment after another and by the parallel command; the scores in the two
gradebooks must be equal. Prints notebooks per second for each and their ratio, and
what one notebook costs: the grader process's start (Python, nbgrader, torch and the
checks imported), a fresh sandboxed kernel's start and a forked one's, the notebook's imports in
rest (running the answers and the tests). Not a test: nothing is asserted about time.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from mutants import mutants_for  # noqa: E402
from nbgrader_harness import Course, assignments, notebooks, solution_code  # noqa: E402

TIMED = {"train-a-tiny-transformer"}
KINDS = ("correct", "partial", "failing", "timeout", "cheating")
FORGE = ("import numpy as np, torch\nnp.allclose = lambda *a, **k: True\n"
         "np.testing.assert_allclose = lambda *a, **k: None\ntorch.allclose = lambda *a, **k: True\n"
         "torch.testing.assert_close = lambda *a, **k: None\n")


def make_class(course: Course, assignment: str, count: int) -> dict[str, str]:
    """Hand in `count` submissions per notebook of `assignment`; returns {student: kind}."""
    kinds = {}
    for notebook in notebooks(assignment):
        mutants = [m for m in mutants_for(assignment) if m.notebook == notebook]
        first = next(iter(solution_code(assignment, notebook)))
        for i in range(count):
            kind, student = KINDS[i % len(KINDS)], f"student{i:03d}"
            mutant = mutants[i % len(mutants)] if mutants else None
            if kind == "correct":
                course.submit_solution(student, assignment, notebook)
            elif kind == "failing" or (kind == "partial" and not mutant):
                course.submit(student, assignment, notebook)
            elif kind == "partial":
                course.submit_solution(student, assignment, notebook, mutant.replace)
            elif kind == "timeout":
                fills = solution_code(assignment, notebook)
                course.submit_solution(student, assignment, notebook,
                                       {first: "while True:\n    pass\n" + fills[first]})
            else:  # cheating: a classic mistake dressed up with forged comparisons
                overrides = dict(mutant.replace) if mutant else {}
                cell = next(iter(overrides), first)
                base = overrides.get(cell, solution_code(assignment, notebook)[cell])
                overrides[cell] = FORGE + base
                course.submit_solution(student, assignment, notebook, overrides)
            kinds[student] = kind
    return kinds


# ------------------------------------------------------------ cost breakdown
def grader_start_seconds(assignment: str, repeat: int = 2) -> float:
    """A fresh grader process: Python, nbgrader, the sandbox and the checks (torch)."""
    module = assignment.replace("-", "_")
    code = f"import nbgrader.apps, autograder.sandbox, autograder.assignments.{module}"
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def _kernel_once(imports: str, fork_server=None) -> tuple[float, float]:
    from autograder.sandbox import KernelUser, SandboxedKernelManager, sandbox_prefix

    workdir = fork_server.new_workdir() if fork_server else tempfile.mkdtemp(prefix="course-grading-")
    user = KernelUser() if os.geteuid() == 0 else None
    try:
        if user:
            os.chown(workdir, user.uid, user.uid)
        km = SandboxedKernelManager(kernel_name="python3")
        limits = dict(memory_bytes=4096 * 2**20, max_processes=64, file_bytes=256 * 2**20)
        if fork_server:
            km.fork_server, km.limits = fork_server, limits
        else:
            km.prefix = sandbox_prefix(workdir, **limits, uid=user.uid if user else None,
                                       hidden=[os.getcwd(), str(REPO), os.path.expanduser("~"), "/tmp", "/home"])
        km.kernel_spec.interrupt_mode = "message"
        km.kernel_uid = user.uid if user else None
        km.transport, km.ip = "ipc", os.path.join(workdir, "kernel-ipc")
        km.connection_file = os.path.join(workdir, "kernel.json")
        t0 = time.perf_counter()
        await km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        t1 = time.perf_counter()
        await kc.execute_interactive(imports, timeout=120)
        t2 = time.perf_counter()
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        return t1 - t0, t2 - t1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if user:
            user.release()


def kernel_seconds(imports: str, repeat: int = 3, fork_server=None) -> tuple[float, float]:
    """(sandboxed kernel start until it answers, `imports` run in it), medians."""
    runs = [asyncio.run(_kernel_once(imports, fork_server)) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def fork_server_seconds() -> tuple[float, object]:
    """A fork server's start (its sandbox, Python, NumPy, torch and ipykernel imported)."""
    from autograder.kernel_forkserver import KernelForkServer

    t = time.perf_counter()
    server = KernelForkServer(hidden=[str(REPO), os.path.expanduser("~"), "/tmp", "/home"])
    return time.perf_counter() - t, server


def print_phases(timings: list[dict], notebooks: int) -> None:
    """Where a grade_class worker's time went, per notebook (means over the run): the
    phases `SandboxedExecute.timings` measures, and nbgrader's own work around them."""
    total = {k: sum(t.get(k, 0) for t in timings) for k in
             ("submission", "executing", "other cells", "test cells", "requests", "in requests")}
    n = max(notebooks, 1)
    kernel = total["executing"] - total["other cells"] - total["test cells"]
    requests = total["requests"] or 1
    print(f"    of which nbgrader's own work (copy, sanitize, gradebook, write): "
          f"{(total['submission'] - total['executing']) / n:6.2f}")
    print(f"    kernel start and shutdown:                            {kernel / n:6.2f}")
    print(f"    the notebook's own cells (answers, loops until the limit): {total['other cells'] / n:6.2f}")
    print(f"    test cells, judged by the grader:                     {total['test cells'] / n:6.2f}  "
          f"({total['requests'] / n:.0f} requests to the kernel per notebook, "
          f"{1000 * total['in requests'] / requests:.1f} ms each, the student's code included)")


# ------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # train-a-tiny-transformer trains until a time budget: its scores depend on how fast the
    # machine is at that moment, under any grader, so it is left out unless asked for.
    parser.add_argument("--assignments", default=",".join(a for a in assignments() if a not in TIMED))
    parser.add_argument("--students", type=int, default=5, help="submissions per notebook")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=int, default=5, help="per-cell limit (Execute.timeout), s")
    parser.add_argument("--keep", help="build the courses in this folder and keep them")
    parser.add_argument("--more-workers", type=int, default=0,
                        help="also grade with this many workers (more than cores: a kernel that waits "
                             "or loops until its time limit leaves CPU to the others)")
    parser.add_argument("--also-cold", action="store_true",
                        help="also grade with --SandboxedExecute.fork_kernels=False (a fresh kernel per notebook)")
    args = parser.parse_args()
    chosen = args.assignments.split(",")
    limits = [f"--Execute.timeout={args.timeout}", "--SandboxedExecute.notebook_timeout=120"]
    base = Path(args.keep or tempfile.mkdtemp(prefix="grade-class-bench-"))
    os.environ["PYTHONWARNINGS"] = "ignore"
    print(f"{os.cpu_count()} CPU(s); assignments: {', '.join(chosen)}; {args.students} students each; "
          f"{args.workers} worker(s); per-cell limit {args.timeout} s", flush=True)

    stock = Course.create(base / "stock", chosen)
    for a in chosen:
        make_class(stock, a, args.students)
    shutil.copytree(stock.root, base / "parallel")
    parallel = Course(base / "parallel", chosen)
    count = sum(len(notebooks(a)) * args.students for a in chosen)

    t = time.perf_counter()
    for a in chosen:
        stock.nbgrader("autograde", a, "--create", "--force", *limits, check=False)
    stock_seconds = time.perf_counter() - t
    print(f"stock nbgrader autograde, sequential: {count} notebooks in {stock_seconds:.1f} s", flush=True)

    from autograder.grade_class import grade_class, parse_overrides

    t = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        summary = grade_class(parallel.root, chosen, workers=args.workers,
                              overrides=parse_overrides(limits), stream=quiet)
    parallel_seconds = time.perf_counter() - t
    print(f"python -m autograder.grade_class --workers {args.workers}: {count} notebooks in "
          f"{parallel_seconds:.1f} s ({len(summary['failed'])} failed)", flush=True)

    def identical() -> bool:
        same = True
        for a in chosen:
            want, got = stock.scores(a), parallel.scores(a)
            if want != got:
                same = False
                for student in sorted(set(want) | set(got)):
                    if want.get(student) != got.get(student):
                        print(f"  DIFFERENT {a}/{student}: stock {want.get(student)} parallel {got.get(student)}")
        return same

    same = identical()
    print(f"scores identical: {same}")
    cold = None
    if args.also_cold:
        t = time.perf_counter()
        with open(os.devnull, "w") as quiet:
            cold = grade_class(parallel.root, chosen, workers=args.workers, regrade=True, stream=quiet,
                               overrides=parse_overrides(limits + ["--SandboxedExecute.fork_kernels=False"]))
        cold["wall"] = time.perf_counter() - t
        print(f"  the same with fresh kernels (--SandboxedExecute.fork_kernels=False): {cold['wall']:.1f} s",
              flush=True)
        cold_same = identical()
        print(f"  scores identical: {cold_same}")
        same = same and cold_same

    more = None
    if args.more_workers:
        t = time.perf_counter()
        with open(os.devnull, "w") as quiet:
            more = grade_class(parallel.root, chosen, workers=args.more_workers, regrade=True, stream=quiet,
                               overrides=parse_overrides(limits))
        more["wall"] = time.perf_counter() - t
        print(f"  the same with --workers {args.more_workers}: {more['wall']:.1f} s", flush=True)
        more_same = identical()
        print(f"  scores identical: {more_same}")
        same = same and more_same

    stock_rate, parallel_rate = count / stock_seconds, count / parallel_seconds
    print(f"\nthroughput: stock {stock_rate:.3f} notebooks/s, parallel {parallel_rate:.3f} notebooks/s, "
          f"ratio {parallel_rate / stock_rate:.2f}x")

    start = grader_start_seconds(chosen[0])
    kernel, imports = kernel_seconds("import numpy, torch")
    server_start, server = fork_server_seconds()
    forked, forked_imports = kernel_seconds("import numpy, torch", fork_server=server)
    server.close()
    worker = statistics.mean(summary["seconds_per_submission"]) if summary["seconds_per_submission"] else 0
    print("\nper notebook (seconds; medians measured alone, the means while grading in parallel):")
    print(f"  grader process start (python, nbgrader, torch, checks): {start:6.2f}  "
          f"paid once per assignment by stock, once per worker by grade_class")
    print(f"  fresh sandboxed kernel start (bwrap, ipykernel ready):  {kernel:6.2f}  stock, per notebook")
    print(f"    then `import numpy, torch` in it:                     {imports:6.2f}")
    print(f"  fork server start (sandbox, imports):                   {server_start:6.2f}  once per worker")
    print(f"  forked kernel start (fork, sandbox, ipykernel ready):   {forked:6.2f}  grade_class, per notebook")
    print(f"    then `import numpy, torch` in it:                     {forked_imports:6.2f}")
    print(f"  stock, whole notebook (wall / notebooks):               {stock_seconds / count:6.2f}")
    print(f"  grade_class worker, whole notebook (mean):              {worker:6.2f}")
    print_phases(summary["timings"], count)
    if cold and cold["seconds_per_submission"]:
        print(f"  ... with fresh kernels (mean):                          "
              f"{statistics.mean(cold['seconds_per_submission']):6.2f}")
        print(f"  throughput with fresh kernels: {count / cold['wall']:.3f} notebooks/s, "
              f"ratio {count / cold['wall'] / stock_rate:.2f}x")
    if more:
        print(f"  throughput with --workers {args.more_workers}: {count / more['wall']:.3f} notebooks/s, "
              f"ratio {count / more['wall'] / stock_rate:.2f}x")
    print(f"\ncourses in {base}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
