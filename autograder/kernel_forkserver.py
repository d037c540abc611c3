"""Sandboxed kernels forked from a Python that has already imported NumPy and torch.

A fresh sandboxed kernel spends about a second and a half of CPU before the student's
first line runs: Python, ipykernel, then `import numpy, torch`. On a machine whose
cores are all grading, that is most of what a small notebook costs. A fork server
pays it once per grading process:

- the *zygote* is a Python started once, in a bubblewrap sandbox like the kernels' own
  (read-only allow-list root, the course, the repository, home directories and /tmp
  absent, no network), holding only the capabilities it needs to build a sandbox
  (`ZYGOTE_CAPABILITIES`). It imports NumPy, torch and
  ipykernel, then waits on a pipe for requests from the grader. It never runs student
  code and never holds anything of a student.
- for each notebook it forks. The child makes the kernel's own sandbox inside the
  zygote's: new mount, pid, IPC and UTS namespaces (the kernel and everything it
  starts live in a pid namespace that dies with it, and see only themselves in
  /proc), then the kernel process gives up everything -- bounding set, groups, root --
  for the notebook's own uid (`autograder.sandbox.KernelUser`), sets `no_new_privs`
  and the POSIX limits (address space, processes, file size), and becomes an
  ipykernel serving the connection file the grader wrote.
- each kernel's working folder is a fresh folder under the fork server's base folder,
  mode 0700 and owned by the kernel's uid; the base folder itself is root's and not
  listable. Nothing else in the sandbox is writable by the kernel.

So a forked kernel has the same walls as a fresh one (`sandbox.sandbox_prefix`):
the same visible files, no network, its own uid, the same limits, its processes killed
when it ends. Two things differ, and neither lets one student reach another: kernels
forked by one zygote share its (empty) network namespace and read-only mount tree,
kept apart by their uids and pid namespaces; and a forked kernel starts with the
zygote's Python state (modules imported, hash seed), with the random generators that
NumPy and `random` seed at import seeded afresh.

The grader talks to the zygote in JSON lines over its stdin and stdout; when the grader
exits, the zygote reads end-of-file and exits, and its kernels die with it
(PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Namespaces and mounts; the switch to the kernel's uid; dropping the bounding set; and
# CAP_KILL, without which a dying sandbox process may not deliver its children's
# parent-death signal across the uid change.
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL")
# What the zygote imports once for every kernel it forks (what the notebooks import).
PRELOAD = ("numpy", "torch", "torch.nn", "torch.nn.functional", "ipykernel.kernelapp", "ipykernel.ipkernel",
           "ipykernel.zmqshell", "ipykernel.debugger", "autograder.kernel_side", "autograder.inputs")


# ------------------------------------------------------------------ grader side
class ForkedKernel:
    """A forked kernel as jupyter_client's provisioner sees a `Popen`: the pid is the
    sandbox's outer process (in the grader's pid namespace); killing it ends the
    kernel's pid namespace, and with it every process the student started."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None
        self._started = _start_time(pid)

    def poll(self):
        if self.returncode is None:
            stat = _stat(self.pid)
            # gone, a zombie waiting for the zygote to reap it, or a reused pid
            if stat is None or stat[0] in "ZX" or _start_time(self.pid) != self._started:
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout=None, interval=0.02):
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("forked kernel", timeout)
            time.sleep(interval)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            if signum == signal.SIGKILL:  # dead in a few ms: spare the caller its 0.1 s polls
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.wait(timeout=1, interval=0.002)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.kill()  # the sandbox holds no state worth a polite end


def _stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int):
    stat = _stat(pid)
    return stat[19] if stat else None


class ForkServerError(RuntimeError):
    pass


class KernelForkServer:
    """The grader's end of one zygote. Thread-safe; one request at a time."""

    def __init__(self, hidden: list[str]):
        from .sandbox import sandbox_words

        self.base = tempfile.mkdtemp(prefix="course-grading-forkserver-")
        os.chmod(self.base, 0o711)  # kernels may enter their own folder, not list others
        self.hidden = [os.path.realpath(p) for p in hidden]
        words, self.exposed = sandbox_words(self.base, hidden=self.hidden)
        words += ["--chdir", self.base, "--unshare-net", "--unshare-ipc", "--unshare-uts", "--new-session",
                  "--unsetenv", "JPY_PARENT_PID", "--setenv", "PYTHONWARNINGS", "ignore", "--cap-drop", "ALL",
                  # OpenBLAS starts its thread pool at import: none in a process that forks
                  "--setenv", "OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1")]
        for capability in ZYGOTE_CAPABILITIES:
            words += ["--cap-add", capability]
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            words + ["--", sys.executable, "-m", "autograder.kernel_forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        ready = self._reply(timeout=180)
        if not ready.get("ready"):
            self.close()
            raise ForkServerError(f"the kernel fork server did not start: {ready.get('error', ready)}")

    def covers(self, path: str) -> bool:
        """True when `path` does not exist inside the zygote's sandbox (never exposed,
        or exposed and then hidden): a student's original folder, the course."""
        real = Path(os.path.realpath(path))
        if any(real.is_relative_to(h) for h in self.hidden):
            return True
        return not any(real.is_relative_to(e) for e in self.exposed)

    def new_workdir(self) -> str:
        return tempfile.mkdtemp(prefix="kernel-", dir=self.base)

    def spawn(self, *, workdir: str, connection_file: str, uid: int, env: dict,
              memory_bytes: int, max_processes: int, file_bytes: int,
              arguments: list[str] | None = None) -> ForkedKernel:
        request = {"op": "spawn", "workdir": workdir, "connection_file": connection_file, "uid": uid,
                   "env": env, "arguments": arguments or ["-f", connection_file], "limits": {"RLIMIT_AS": memory_bytes, "RLIMIT_NPROC": max_processes,
                                          "RLIMIT_FSIZE": file_bytes}}
        with self._lock:
            if self.process.poll() is not None:
                raise ForkServerError(f"the kernel fork server has exited ({self.process.returncode})")
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            reply = self._reply(timeout=60)
        if "pid" not in reply:
            raise ForkServerError(f"the kernel fork server could not start a kernel: {reply.get('error', reply)}")
        return ForkedKernel(reply["pid"])

    def _reply(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            return {"error": "no answer" if not ready else "it exited"}
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.close()  # the zygote reads end-of-file and exits
            self.process.wait(timeout=10)
        with contextlib.suppress(Exception):
            self.process.kill()
        shutil.rmtree(self.base, ignore_errors=True)


_servers: dict[tuple, KernelForkServer] = {}
_servers_lock = threading.Lock()


def shared_fork_server(hidden: list[str]) -> KernelForkServer:
    """This process's fork server for a set of hidden paths, started on first use."""
    from multiprocessing.util import Finalize

    key = tuple(hidden)
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.process.poll() is not None:
            server = _servers[key] = KernelForkServer(hidden)
            # at exit, also of a multiprocessing worker (which skips atexit)
            Finalize(server, server.close, exitpriority=10)
        return server


# ------------------------------------------------------------------ zygote side
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x00020000, 0x04000000, 0x08000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def _mount(source, target, fstype, flags) -> None:
    encode = lambda s: s.encode() if s else None  # noqa: E731
    _check(_libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), None),
           f"mount {target}")


def _capabilities() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {k: int(v, 16) for k, v in (line.split(":\t") for line in f) if k.startswith("Cap")}


def _clear_inheritable_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; two 32-bit words
    _check(_libc.capset(header, data), "capset")


def _reap(*_):
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def serve() -> None:
    """The zygote's loop: one JSON request per line on stdin, one answer per line on stdout."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import gc

    gc.freeze()  # the kernels' collections skip the preloaded objects: fewer pages copied
    signal.signal(signal.SIGCHLD, _reap)
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            answer = {"pid": _spawn(request)} if request.get("op") == "spawn" else {"error": "unknown op"}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    # end of file: the grader is gone; the kernels' PR_SET_PDEATHSIG ends them


def _spawn(request: dict) -> int:
    """Fork the kernel's sandbox; return its outer pid once the kernel is about to start."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            _sandbox_then_kernel(request, write_end)
        except BaseException as error:
            with contextlib.suppress(Exception):
                os.write(write_end, f"{type(error).__name__}: {error}".encode()[:4000])
        finally:
            os._exit(127)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 30)
        said = pipe.read(4096).decode(errors="replace") if ready else "no answer in 30 s"
    if said != "ok":
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise ForkServerError(said or "the kernel's sandbox exited while starting")
    return pid


def _sandbox_then_kernel(request: dict, report: int) -> None:
    zygote = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote's end is ours
    if os.getppid() != zygote:
        os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the zygote
    alive, alive_writer = os.pipe()  # end-of-file on it: this process is gone
    init = os.fork()  # pid 1 of the new pid namespace
    if init:
        os.close(report)
        _, status = os.waitpid(init, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(alive_writer)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # shows this namespace only
    kernel = os.fork()
    if kernel:
        # init: holds nothing, reaps orphans; when it ends, the kernel's namespace ends
        os.close(report)
        _drop_privileges(request["uid"], {})
        # set after the uid change, which clears it; then make sure the parent was alive
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([alive], [], [], 0)[0]:
            os._exit(1)
        while True:
            pid, status = os.wait()
            if pid == kernel:
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.setsid()
    _drop_privileges(request["uid"], request["limits"])
    _become_kernel(request, report)


def _drop_privileges(uid: int, limits: dict) -> None:
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    capability = 0
    while _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(capability), 0, 0, 0) == 0:
        capability += 1
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the permitted, effective and ambient sets
    _clear_inheritable_capabilities()
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    left = {k: v for k, v in _capabilities().items() if v}
    if left or os.getuid() != uid or os.geteuid() != uid:
        raise ForkServerError(f"privileges were not dropped: {left}, uid {os.getuid()}")


def _become_kernel(request: dict, report: int) -> None:
    import random

    import numpy

    workdir = request["workdir"]
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(HOME=workdir, TMPDIR=workdir, MPLCONFIGDIR=workdir)
    tempfile.tempdir = None
    sys.path[0] = workdir  # as `python -m ipykernel_launcher` run in the working folder
    arguments = request.get("arguments") or ["-f", request["connection_file"]]
    sys.argv = [sys.executable, "-m", "ipykernel_launcher", *arguments]
    random.seed()
    numpy.random.seed()
    os.write(report, b"ok")
    os.close(report)
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(arguments)  # not sys.argv: IPython reads -m as "run module"
    app.start()
    os._exit(0)


if __name__ == "__main__":
    serve()
