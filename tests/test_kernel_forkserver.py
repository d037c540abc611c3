"""The walls around a student's kernel, fresh (bubblewrap per notebook) and forked
(autograder/kernel_forkserver.py), probed from inside real sandboxed kernels.

tests/test_untrusted.py grades the hostile class under both kinds of kernel; these
tests look at the walls directly: identity and limits, what the kernel can see and
write, that two kernels of one fork server cannot reach each other, and that nothing
survives a grader killed mid-notebook.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [
    pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="kernels get uids of their own only when grading as root"),
    pytest.mark.xdist_group("kernel-forkserver"),
]

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import os, resource, socket
status = dict(line.rstrip("\n").split(":\t", 1) for line in open("/proc/self/status"))
print("uid", os.getuid(), os.geteuid(), os.getgroups())
print("caps", {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")})
print("no_new_privs", status["NoNewPrivs"])
print("limits", [resource.getrlimit(getattr(resource, n))[0] for n in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE")])
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
for path in [REPO + "/solutions", REPO + "/tests", os.path.expanduser("~root"), "/home", SOURCE]:
    print("exists" if os.path.exists(path) else "absent", path)
for path in ["/tmp/probe", "/etc/probe", "/usr/probe", "probe"]:
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as error:
        print("refused", path, type(error).__name__)
print("helper", open("helper.txt").read())
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("network reachable")
except OSError as error:
    print("network", type(error).__name__)
import torch, numpy
print("torch", torch.ones(2) @ torch.ones(2))
"""


def run_in_kernel(code: str, source: Path, fork: bool) -> str:
    """Execute `code` in one notebook through SandboxedExecute; return what it printed."""
    from autograder.sandbox import SandboxedExecute

    nb = new_notebook(cells=[new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    executor = SandboxedExecute(fork_kernels=fork, timeout=60)
    out, _ = executor.preprocess(nb, {"metadata": {"path": str(source)}})
    return "".join(o.get("text", "") + o.get("evalue", "") for o in out.cells[0].outputs)


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "submitted" / "student" / "assignment"
    folder.mkdir(parents=True)
    (folder / "helper.txt").write_text("student's own file")
    return folder


@pytest.mark.parametrize("fork", [False, True], ids=["fresh", "forked"])
def test_walls_of_a_kernel(source, fork):
    code = f"REPO, SOURCE = {str(REPO)!r}, {str(source)!r}\n" + PROBE
    said = run_in_kernel(code, source, fork)
    lines = dict(line.split(" ", 1) for line in said.splitlines() if " " in line)
    uid, euid, groups = lines["uid"].split(" ", 2)
    assert uid == euid and int(uid) >= 200_000 and groups == "[]", said  # a uid of its own, no groups
    assert set(eval(lines["caps"]).values()) == {"0000000000000000"}, said  # no capability at all
    assert lines["no_new_privs"] == "1", said
    assert eval(lines["limits"]) == [4096 * 2**20, 64, 256 * 2**20], said
    assert len(eval(lines["pids"])) <= 4, said  # its own pid namespace: init, kernel, maybe a helper
    for path in ("/solutions", "/tests", "/home", str(source)):
        assert f"absent {path}" in said or f"absent {REPO}{path}" in said, said
    assert "wrote probe" in said and "wrote /tmp" not in said and "wrote /etc" not in said, said
    assert "helper student's own file" in said and "tensor(2.)" in said, said
    assert "network OSError" in said and "network reachable" not in said, said
    assert not (source / "probe").exists(), "the kernel wrote into the student's original folder"


def _start(server, user, workdir):
    from jupyter_client.connect import write_connection_file

    connection = os.path.join(workdir, "kernel.json")
    write_connection_file(connection, transport="ipc", ip=os.path.join(workdir, "kernel-ipc"))
    os.chown(connection, user.uid, user.uid)
    process = server.spawn(workdir=workdir, connection_file=connection, uid=user.uid, env={"PATH": "/usr/bin"},
                           memory_bytes=4 * 2**30, max_processes=64, file_bytes=2**28)
    return process, connection


def run_code(connection: str, code: str) -> str:
    """Run `code` in the kernel behind `connection` and return what it printed. On a
    thread of its own: an earlier test in this process may have left an event loop
    running on this one (Playwright's sync API does)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, _run(connection, code)).result()


async def _run(connection: str, code: str) -> str:
    from jupyter_client.asynchronous import AsyncKernelClient

    client = AsyncKernelClient(connection_file=connection)
    client.load_connection_file()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        said = []
        await client.execute_interactive(code, timeout=60, output_hook=lambda m: said.append(
            m["content"].get("text", "") + m["content"].get("evalue", "")))
        return "".join(said)
    finally:
        client.stop_channels()


def test_two_kernels_of_one_fork_server_cannot_reach_each_other():
    from autograder.kernel_forkserver import KernelForkServer
    from autograder.sandbox import KernelUser

    server = KernelForkServer(hidden=[str(REPO), "/tmp", "/home", "/root"])
    users = [KernelUser(), KernelUser()]
    workdirs = [server.new_workdir() for _ in users]
    processes = []
    try:
        for user, workdir in zip(users, workdirs):
            os.chown(workdir, user.uid, user.uid)
            processes.append(_start(server, user, workdir))
        first = run_code(processes[0][1], "import os; open('secret.txt', 'w').write('mine'); print(os.getcwd())")
        assert first.strip() == workdirs[0]
        second = run_code(processes[1][1], textwrap.dedent(f"""
            import os
            for path in [{workdirs[0]!r} + '/secret.txt', {workdirs[0]!r}, {server.base!r}]:
                try:
                    print('READ', path, open(path).read() if path.endswith('.txt') else os.listdir(path))
                except OSError as error:
                    print('refused', type(error).__name__)
            """))
        assert "READ" not in second and second.count("refused PermissionError") == 3, second
    finally:
        for process, _ in processes:
            process.kill()
            process.wait(timeout=10)
        server.close()
        for user in users:
            user.release()


GRADER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from autograder.kernel_forkserver import KernelForkServer
from autograder.sandbox import KernelUser
sys.path.insert(0, {tests!r})
from test_kernel_forkserver import _start, run_code
server = KernelForkServer(hidden=[{repo!r}, "/tmp", "/home", "/root"])
user = KernelUser()
workdir = server.new_workdir()
os.chown(workdir, user.uid, user.uid)
process, connection = _start(server, user, workdir)
run_code(connection, "import os, time\\nif os.fork() == 0:\\n    time.sleep(600)\\n")
print(server.base, flush=True)
time.sleep(600)
"""


def _processes_in(folder: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(folder):
            found.append(f"{pid} {cwd}")
    return found


def test_a_killed_grader_leaves_no_kernel_behind():
    grader = subprocess.Popen([sys.executable, "-c", GRADER.format(repo=str(REPO), tests=str(REPO / "tests"))],
                              stdout=subprocess.PIPE, text=True)
    base = grader.stdout.readline().strip()
    assert base and _processes_in(base), "the kernel and its child should be running"
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    deadline = time.monotonic() + 10
    while _processes_in(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_in(base), "processes outlived their grader:\n" + "\n".join(_processes_in(base))


def test_a_kernel_slow_to_start_is_waited_for():
    """A kernel that answers only after a few seconds (a fresh one on a busy machine)
    has queued up several kernel_info requests by then; the client must accept any
    answer, not wait, one answer behind, until its deadline."""
    from autograder.sandbox import SandboxedKernelManager

    async def start() -> float:
        km = SandboxedKernelManager(kernel_name="python3")
        km.prefix = ["sh", "-c", 'sleep 2.5; exec "$@"', "sh"]  # before the kernel itself
        await km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        began = time.monotonic()
        try:
            await kc.wait_for_ready(timeout=30)
            return time.monotonic() - began
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop of its own (see above)
        waited = pool.submit(asyncio.run, start()).result(timeout=120)
    assert waited < 20, f"ready only after {waited:.1f} s"
