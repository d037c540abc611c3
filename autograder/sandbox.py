"""Grading untrusted notebooks with the stock `nbgrader autograde`.

`SandboxedExecute` replaces nbgrader's `Execute` preprocessor (see nbgrader_config.py):

- the student's kernel runs in bubblewrap: read-only file system, the course directory,
  the repository, home directories and /tmp hidden, one private writable working copy,
  no network (IPC transport, `--unshare-net`), an unprivileged user, and POSIX limits
  on memory (address space), processes and file size;
- wall-clock limits per cell and per notebook, and a cap on the output kept;
- graded test cells are NOT executed in the kernel. Their source (restored from the
  gradebook by nbgrader, so trusted) is read by the grader, which runs the checks in
  its own process. Each time a check calls student code, the grader asks the kernel to
  make that one call on inputs the grader drew, and gets back plain arrays
  (`autograder.kernel_side`). The verdict is reached where student code cannot reach.
"""
from __future__ import annotations

import ast
import collections
import contextlib
import importlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from queue import Empty

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output
from traitlets import Bool, Float, Integer, List, Unicode, default

from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution

from . import kernel_side
from .checks import CheckFailed

UID_LOCKS = Path(tempfile.gettempdir()) / "course-grading-uids"


class KernelUser:
    """A numeric uid of its own for one sandboxed kernel, so that RLIMIT_NPROC counts
    that kernel's processes only (a fork bomb cannot starve other students' kernels).
    The uid has no account; a lock file in UID_LOCKS keeps concurrent graders apart."""

    def __init__(self):
        UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
        rng = random.SystemRandom()
        while True:
            uid = rng.randrange(200_000, 2_000_000)
            try:
                os.close(os.open(UID_LOCKS / str(uid), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                continue
            self.uid = uid
            return

    def release(self):
        with contextlib.suppress(OSError):
            os.unlink(UID_LOCKS / str(self.uid))


class SandboxUnavailable(RuntimeError):
    pass


# ----------------------------------------------------------------- the sandbox
def sandbox_words(writable: str, *, hidden: list[str]) -> tuple[list[str], list[Path]]:
    """bwrap's mount words for an allow-list root with one writable folder, and the
    paths that are visible inside (read-only, except `writable`)."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise SandboxUnavailable("bubblewrap (`bwrap`) is not installed")
    import autograder

    # An allow-list: the new root is an empty tmpfs holding the system directories
    # (read-only), the Python installation and the grading library, and the kernel's
    # own working copy. Nothing else of the machine (other course copies, home
    # directories, /tmp, /work, /srv, ...) exists inside.
    words = [bwrap]
    bound: list[Path] = []
    for system in ("/usr", "/etc", "/sys"):
        if os.path.isdir(system):
            words += ["--ro-bind", system, system]
            bound.append(Path(system))
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):  # merged /usr: /lib -> usr/lib
            words += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            words += ["--ro-bind", top, top]
            bound.append(Path(top))
    words += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/"), Path("/tmp")}

    def expose(path: Path, how: str) -> None:
        if any(path.is_relative_to(b) for b in bound):
            return  # already visible through a system directory
        # Directories that bwrap creates for mount points are 0700: make the way readable.
        for parent in reversed(path.parents):
            if parent not in made and not any(parent.is_relative_to(b) for b in bound):
                words.extend(["--perms", "0755", "--dir", str(parent)])
                made.add(parent)
        words.extend([how, str(path), str(path)])
        bound.append(path)

    exposed = sorted({Path(os.path.realpath(p)) for p in (
        sys.prefix, sys.base_prefix, os.path.dirname(autograder.__file__),
        # a venv's python is often a symlink into the base installation
        os.path.dirname(os.path.realpath(sys.executable)))})
    for path in exposed:
        expose(path, "--ro-bind")
    expose(Path(os.path.realpath(writable)), "--bind")
    for path in hidden:  # extra paths to hide even inside what is exposed
        if os.path.exists(path) and any(Path(os.path.realpath(path)).is_relative_to(b) for b in bound):
            words += ["--tmpfs", os.path.realpath(path)]
    return words, bound


def sandbox_prefix(workdir: str, *, memory_bytes: int, max_processes: int, file_bytes: int,
                   hidden: list[str], uid: int | None) -> list[str]:
    """The bwrap + setpriv + prlimit words that go before the kernel command."""
    for tool in ("prlimit", "setpriv"):
        if not shutil.which(tool):
            raise SandboxUnavailable(f"`{tool}` (util-linux) is not installed")
    words, _ = sandbox_words(workdir, hidden=hidden)
    words += ["--chdir", workdir,
              # A pid namespace: when the kernel ends, everything it started ends with it.
              # ipykernel quits if it polls a parent pid it cannot see, so that is unset.
              "--unshare-pid", "--unsetenv", "JPY_PARENT_PID",
              # and when the grader dies (a killed worker), the sandbox dies with it.
              "--die-with-parent",
              "--unshare-net", "--unshare-ipc", "--unshare-uts", "--new-session",
              "--setenv", "HOME", workdir, "--setenv", "TMPDIR", workdir,
              "--setenv", "MPLCONFIGDIR", workdir, "--setenv", "PYTHONWARNINGS", "ignore", "--"]
    if uid is not None:
        # Root ignores RLIMIT_NPROC; an unprivileged uid makes the process limit real.
        words += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all", "--"]
    words += ["prlimit", f"--as={memory_bytes}", f"--nproc={max_processes}",
              f"--fsize={file_bytes}", "--"]
    return words


def descendants(pid: int) -> list[int]:
    """Every process descended from `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, found = [pid], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class PromptKernelClient(AsyncKernelClient):
    """jupyter_client's client, ready as soon as the kernel is.

    The stock `wait_for_ready`, once the kernel has answered, reads IOPub until it has
    been quiet for 0.2 s: a fixed pause per notebook. Here the end of the wait is an
    event instead: the `idle` status that follows our kernel_info request on IOPub,
    which also proves IOPub is connected. When the kernel welcomes our subscription
    (`iopub_welcome`), that status may have gone out before it: we ask again."""

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        asked: set[str] = set()
        while True:
            # A kernel that takes more than a second to start (a fresh one on a busy
            # machine) answers every request sent meanwhile, in order: any of them counts.
            asked.add(self.kernel_info())
            with contextlib.suppress(Empty):
                reply = await self.shell_channel.get_msg(timeout=1)
                if reply["parent_header"].get("msg_id") in asked:
                    with contextlib.suppress(Empty):
                        while True:
                            msg = await self.iopub_channel.get_msg(timeout=0.5)
                            if (msg["parent_header"].get("msg_id") in asked and msg["msg_type"] == "status"
                                    and msg["content"].get("execution_state") == "idle"):
                                self._handle_kernel_info_reply(reply)
                                return
                            if msg["msg_type"] == "iopub_welcome":
                                break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    wait_for_ready = _async_wait_for_ready  # AsyncKernelClient binds the base coroutine


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs sandboxed: its command wrapped by
    `sandbox_prefix`, or forked by a `kernel_forkserver.KernelForkServer`."""

    prefix: list[str] = []
    kernel_uid: int | None = None
    fork_server = None
    limits: dict = {}

    @default("client_factory")
    def _prompt_client(self):
        return PromptKernelClient

    def format_kernel_cmd(self, extra_arguments=None):
        return list(self.prefix) + super().format_kernel_cmd(extra_arguments)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.fork_server is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        env = {k: v for k, v in (kw.get("env") or os.environ).items() if k != "JPY_PARENT_PID"}
        # the kernel's own arguments, as a fresh kernel gets them (e.g. nbgrader's
        # --HistoryManager.hist_file=:memory:)
        arguments = kernel_cmd[kernel_cmd.index("-f"):] if "-f" in kernel_cmd else []
        process = self.fork_server.spawn(workdir=kw.get("cwd") or os.path.dirname(self.connection_file),
                                         connection_file=self.connection_file, uid=self.kernel_uid,
                                         env=env, arguments=arguments, **self.limits)
        self.provisioner.process, self.provisioner.pid, self.provisioner.pgid = process, process.pid, None
        self._reconcile_connection_info(self.provisioner.connection_info)

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        # Signals reach only the sandbox's outer process; its pid namespace (kernel, and
        # whatever it forked) might outlive it. Note its processes now, kill them after.
        process = getattr(self.provisioner, "process", None) if self.sandboxed else None
        inside = descendants(process.pid) if process is not None else []
        try:
            await super()._async_shutdown_kernel(now=now, restart=restart)
        finally:
            for pid in inside:
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)

    # AsyncKernelManager binds its public coroutine names to the base implementations.
    shutdown_kernel = _async_shutdown_kernel

    @property
    def sandboxed(self) -> bool:
        return bool(self.prefix) or self.fork_server is not None

    def write_connection_file(self, **kwargs):
        result = super().write_connection_file(**kwargs)
        if self.sandboxed and self.kernel_uid is not None:  # the kernel's user must read it
            os.chown(self.connection_file, self.kernel_uid, self.kernel_uid)
        return result


# ---------------------------------------------------------- talking to a kernel
class RemoteHandle:
    """A student's object that lives in the kernel; attribute access is lazy."""

    def __init__(self, channel, root, path=(), mro=()):
        # mro: qualified names of the object's classes, when the kernel told us
        self._channel, self._root, self._path, self._mro = channel, root, tuple(path), tuple(mro)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return RemoteHandle(self._channel, self._root, self._path + (name,))

    def __call__(self, *args, **kwargs):
        return self._channel.request("call", self, args=args, kwargs=kwargs)

    def __repr__(self):
        name = ".".join(str(p) for p in (self._root, *self._path))
        return f"<student object {name}{' (' + self._mro[0] + ')' if self._mro else ''}>"

    @property
    def spec(self):
        return {"root": self._root, "path": list(self._path)}


class StudentError(Exception):
    """Student code raised inside the kernel: (exception type name, message)."""

    def __init__(self, kind: str, message: str):
        super().__init__(kind, message)
        self.kind, self.message = kind, message


class KernelDied(Exception):
    pass


class CallTimedOut(KernelDied):
    """The student's code did not answer a request within the time limit (the kernel
    was interrupted, and answers the next request)."""


class KernelChannel:
    """Sends one request at a time to the kernel, over the executor's comm with it."""

    def __init__(self, executor, index: int):
        self.executor, self.index = executor, index

    def request(self, op: str, target: RemoteHandle, *, args=(), kwargs=None, forbid=(), **extra):
        arrays: list = []
        tree = {"op": op, "target": target.spec, "forbid": list(forbid),
                "args": kernel_side.encode(tuple(args), arrays, self._handle_spec),
                "kwargs": kernel_side.encode(dict(kwargs or {}), arrays, self._handle_spec)}
        for key, value in extra.items():
            tree[key] = kernel_side.encode(value, arrays, self._handle_spec)
        answer, blob = self.executor.ask_kernel(tree, kernel_side.pack_arrays(arrays), self.index)
        try:
            answer_arrays = kernel_side.unpack_arrays(blob)
        except Exception as error:
            raise KernelDied(f"the kernel's answer was unreadable ({type(error).__name__})") from None
        if not isinstance(answer, dict) or not ("ok" in answer or "error" in answer):
            raise KernelDied("the kernel's answer was malformed")
        if "error" in answer:
            raise StudentError(str(answer["error"]), str(answer.get("message", "")))
        return kernel_side.decode(answer["ok"], answer_arrays, self._make_handle)

    def _make_handle(self, tree):
        return RemoteHandle(self, tree["__handle__"], (), tree.get("mro", ()))

    @staticmethod
    def _handle_spec(value):
        if isinstance(value, RemoteHandle):
            if value._path:
                raise TypeError("only whole student objects can be passed back to the kernel")
            return {"__handle__": value._root}
        raise TypeError(f"cannot send a {type(value).__name__} to the kernel")


# ------------------------------------------------------------ the test cells
def parse_test_cell(source: str):
    """[(module, function name, [argument AST nodes], {keyword: AST node})] of a test cell.

    Test cells may only import from `autograder.assignments` and call the imported
    checks with names of the student's objects and constants. Anything else is a
    course authoring error, reported as such.
    """
    imported: dict[str, str] = {}
    calls = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autograder.assignments."):
            for alias in node.names:
                imported[alias.asname or alias.name] = (node.module, alias.name)
        elif (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
              and isinstance(node.value.func, ast.Name) and node.value.func.id in imported):
            module, name = imported[node.value.func.id]
            calls.append((module, name, node.value.args, {k.arg: k.value for k in node.value.keywords}))
        else:
            raise ValueError(f"test cells may only import checks from autograder.assignments and call "
                             f"them; found: {ast.unparse(node)[:80]}")
    return calls


def _argument(node, channel):
    if isinstance(node, ast.Name):
        return RemoteHandle(channel, node.id)
    return ast.literal_eval(node)


def run_test_cell(source: str, channel: KernelChannel) -> list[NotebookNode]:
    """Run a test cell's checks in this process; return the cell's outputs (the verdict)."""
    from . import checks

    stdout = io.StringIO()
    error = None
    token = checks.set_remote_sources(channel.executor.student_sources)
    try:
        with contextlib.redirect_stdout(stdout):
            for module, name, args, kwargs in parse_test_cell(source):
                check = getattr(importlib.import_module(module), name)
                check(*[_argument(a, channel) for a in args],
                      **{k: _argument(v, channel) for k, v in kwargs.items()})
    except CheckFailed as failed:
        error = ("CheckFailed", str(failed).strip())
    except CallTimedOut as late:
        error = ("TimeoutError", f"Your code did not return within the {late.args[0]} s time limit when this "
                                 f"test called it (an endless loop, or far too slow?), so the grader "
                                 f"interrupted it.")
    except KernelDied as died:
        error = ("KernelDied", "Your notebook's kernel stopped answering before this test could run "
                               f"({died}). Did your code exit, crash or run past a time limit?")
    except Exception:  # a bug in a check must be visible, never silently pass
        error = ("GraderError", "The grader failed while running this test; please tell your "
                                "instructor.\n" + traceback.format_exc(limit=4))
    finally:
        checks.set_remote_sources(token)
    outputs = []
    if stdout.getvalue():
        outputs.append(new_output("stream", name="stdout", text=stdout.getvalue()))
    if error:
        outputs.append(new_output("error", ename=error[0], evalue=error[1],
                                  traceback=[f"{error[0]}: {error[1]}"]))
    return outputs


# ----------------------------------------------------------- the preprocessor
class SandboxedExecute(Execute):
    """nbgrader's Execute, with the kernel sandboxed and test cells judged outside it."""

    require_sandbox = Bool(True, help="Refuse to grade when bubblewrap is unavailable. Set to "
                                      "False only to grade trusted notebooks WITHOUT protection."
                           ).tag(config=True)
    judge_outside_kernel = Bool(True, help="Run graded test cells in the grader, not the kernel.").tag(config=True)
    memory_limit_mb = Integer(4096, help="Address-space limit of the kernel, in MiB.").tag(config=True)
    max_processes = Integer(64, help="Process limit of the kernel's user.").tag(config=True)
    file_size_limit_mb = Integer(256, help="Largest file the kernel may write, in MiB.").tag(config=True)
    notebook_timeout = Float(600, help="Wall-clock limit for one notebook, in seconds.").tag(config=True)
    output_limit_kb = Integer(1024, help="Output kept per notebook, in KiB; the rest is dropped.").tag(config=True)
    hidden_paths = List(Unicode(), help="Extra paths hidden from the kernel.").tag(config=True)

    fork_kernels = Bool(False, help=(
        "Fork each notebook's kernel, in a sandbox of its own, from a sandboxed Python that "
        "has already imported NumPy and torch (autograder/kernel_forkserver.py), instead of "
        "starting a fresh one: about a second and a half less CPU per notebook. Needs root; "
        "otherwise fresh kernels are used.")).tag(config=True)

    _fork_server_failed = None  # why the fork server could not start in this process
    # Where grading time goes (benchmarks/grade_class.py reads it): seconds per phase and
    # requests to the kernel, summed over the notebooks this process has graded.
    timings: collections.Counter = collections.Counter()

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)

    @default("shutdown_kernel")
    def _kill_at_the_end(self):
        return "immediate"  # the sandbox is thrown away: no graceful shutdown to wait for

    def preprocess(self, nb, resources=None, km=None):
        source_dir = (resources or {}).get("metadata", {}).get("path") or os.getcwd()
        self._fork_server = self._get_fork_server(source_dir)
        workdir = self._fork_server.new_workdir() if self._fork_server else tempfile.mkdtemp(prefix="course-grading-")
        try:
            for item in Path(source_dir).iterdir():  # the student's files, never the original
                if item.is_file() and item.suffix != ".ipynb":
                    shutil.copy(item, workdir)
                elif item.is_dir() and not item.name.startswith("."):
                    shutil.copytree(item, Path(workdir) / item.name, symlinks=False)
            self._user = KernelUser() if os.geteuid() == 0 else None
            if self._user:  # the kernel runs as an unprivileged user: give it its copy
                for root, dirs, files in os.walk(workdir):
                    for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                        os.chown(name, self._user.uid, self._user.uid)
            resources = dict(resources or {})
            resources["metadata"] = dict(resources.get("metadata", {}), path=workdir)
            self._workdir, self._deadline = workdir, time.monotonic() + self.notebook_timeout
            self._output_bytes, self._truncated, self._died = 0, False, None
            self._comm_id, self._comm_opened, self._requests = None, None, 0  # the grader's comm
            # The answer cells, scanned for forbidden built-ins (scratch cells may use them
            # to compare, answer cells may not).
            self.student_sources = [c.source for c in nb.cells if c.cell_type == "code"
                                    and c.metadata.get("nbgrader", {}).get("solution")]
            self._prefix = [] if self._fork_server else self._make_prefix(workdir, source_dir)
            started = time.perf_counter()
            try:
                return super().preprocess(nb, resources, km)
            finally:
                self.timings["notebooks"] += 1
                self.timings["executing"] += time.perf_counter() - started
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if getattr(self, "_user", None):
                self._user.release()

    def _hidden(self, *extra: str) -> list[str]:
        import autograder

        return [*extra, os.path.dirname(os.path.dirname(autograder.__file__)),
                os.path.expanduser("~"), "/root", "/home", "/tmp", "/var/tmp", tempfile.gettempdir(),
                *self.hidden_paths]

    def _get_fork_server(self, source_dir):
        """This process's fork server, when asked for and usable for this notebook."""
        if not self.fork_kernels:
            return None
        if os.geteuid() != 0:
            self.log.warning("fork_kernels needs root (kernels run as uids of their own); "
                             "starting a fresh sandboxed kernel instead")
            return None
        from .kernel_forkserver import ForkServerError, shared_fork_server

        if SandboxedExecute._fork_server_failed:
            return None
        try:
            server = shared_fork_server(self._hidden())
        except SandboxUnavailable:
            return None  # _make_prefix reports it
        except (ForkServerError, OSError) as error:  # e.g. capabilities refused in a container
            SandboxedExecute._fork_server_failed = str(error)
            self.log.warning("the kernel fork server could not start (%s); fresh sandboxed kernels "
                             "are used instead", error)
            return None
        # The zygote's sandbox was made before this notebook was known: the student's
        # original folder and the current directory (the course) must be absent from it,
        # as they are from a fresh sandbox.
        if not (server.covers(source_dir) and server.covers(os.getcwd())):
            self.log.warning("%s is visible in the fork server's sandbox; starting a fresh kernel", source_dir)
            return None
        return server

    def _make_prefix(self, workdir, source_dir):
        hidden = self._hidden(os.getcwd(), str(Path(source_dir).resolve()))
        try:
            return sandbox_prefix(workdir, memory_bytes=self.memory_limit_mb * 2**20,
                                  max_processes=self.max_processes,
                                  file_bytes=self.file_size_limit_mb * 2**20, hidden=hidden,
                                  uid=self._user.uid if self._user else None)
        except SandboxUnavailable as why:
            if self.require_sandbox:
                raise SandboxUnavailable(
                    f"{why}. Student code would run unprotected. Install it (Debian/Ubuntu: "
                    f"`apt-get install bubblewrap`), or, to grade trusted notebooks without "
                    f"protection, set c.SandboxedExecute.require_sandbox = False.") from None
            self.log.warning("GRADING WITHOUT A SANDBOX: %s", why)
            return []

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._prefix or self._fork_server:
            km.prefix, km.fork_server = self._prefix, self._fork_server
            km.limits = {"memory_bytes": self.memory_limit_mb * 2**20, "max_processes": self.max_processes,
                         "file_bytes": self.file_size_limit_mb * 2**20}
            # Signals cannot cross into the sandbox's session: interrupt by message.
            km.kernel_spec.interrupt_mode = "message"
            km.kernel_uid = self._user.uid if self._user else None
            km.transport = "ipc"
            km.ip = os.path.join(self._workdir, "kernel-ipc")
            km.connection_file = os.path.join(self._workdir, "kernel.json")
        return km

    def _get_timeout(self, cell):
        remaining = self._deadline - time.monotonic()
        base = super()._get_timeout(cell)
        return max(1, int(min(base or remaining, remaining)))

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if time.monotonic() > self._deadline:
            cell.outputs = [new_output("error", ename="NotebookTimeLimit", evalue=(
                f"Not run: the notebook used up its {self.notebook_timeout:.0f} s time limit."),
                traceback=[])]
            return cell, resources
        if self._died:
            cell.outputs = [new_output("error", ename="KernelDied", evalue=(
                f"Not run: the notebook's kernel died earlier ({self._died}). Did your code call "
                f"os._exit, crash the interpreter, or exceed the memory limit?"), traceback=[])]
            return cell, resources
        started = time.perf_counter()
        if self.judge_outside_kernel and is_grade(cell) and not is_solution(cell):  # a test cell
            outputs = run_test_cell(cell.source, KernelChannel(self, index))
            cell.outputs = outputs
            self.nb.cells[index] = cell  # nbclient put each request's cell at this index
            self.timings["test cells"] += time.perf_counter() - started
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError as error:
            self._died = f"in cell {index}: {error}"
            cell.outputs.append(new_output("error", ename="KernelDied", evalue=(
                f"The kernel died while running this cell ({error})."), traceback=[]))
            return cell, resources
        except CellTimeoutError as error:
            # nbclient gives up on a cell whose output stops coming (a kernel still busy
            # with code that an interrupt has not stopped yet): that cell fails, the
            # notebook goes on, as after any other timeout.
            cell.outputs.append(new_output("error", ename="CellTimeoutError", evalue=str(error).split("\n")[0],
                                           traceback=[]))
            return cell, resources
        finally:
            self.timings["other cells"] += time.perf_counter() - started

    # ------------------------------------------------ the grader's comm with the kernel
    def ask_kernel(self, tree: dict, blob: bytes, index: int) -> tuple[dict, bytes]:
        """One request to the kernel, over a comm opened on first use (`kernel_side.listen`);
        returns the kernel's (answer, arrays as .npz bytes). Raises KernelDied when the
        kernel dies, cannot open the comm, or runs past the time limit (it is then
        interrupted, as a cell would be)."""
        if self._comm_id is None:
            comm_id = uuid.uuid4().hex
            cell = new_code_cell(f"__import__('autograder.kernel_side').kernel_side.listen({comm_id!r}, globals())")
            try:
                self.execute_cell(cell, index, store_history=False)
            except Exception as error:  # a dead kernel or a timeout
                raise KernelDied(f"{type(error).__name__}: {error}") from None
            errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
            if errors:
                raise KernelDied(f"the kernel gave no answer ({errors[0]})")
            if self._comm_opened != comm_id:  # e.g. an input transformer ate the cell
                raise KernelDied("the kernel gave no answer: the grader's channel did not open")
            self._comm_id = comm_id
        started = time.perf_counter()
        try:
            return run_sync(self._async_ask_kernel)(tree, blob)
        finally:
            self.timings["requests"] += 1
            self.timings["in requests"] += time.perf_counter() - started

    async def _async_ask_kernel(self, tree: dict, blob: bytes) -> tuple[dict, bytes]:
        self._requests += 1
        request_id, kc = self._requests, self.kc
        message = kc.session.msg("comm_msg", {"comm_id": self._comm_id,
                                              "data": {"id": request_id, "request": tree}})
        kc.session.send(kc.shell_channel.socket, message, buffers=[blob])
        timeout = self._get_timeout(None)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                await ensure_async(self.km.interrupt_kernel())
                raise CallTimedOut(timeout)
            try:
                msg = await kc.iopub_channel.get_msg(timeout=min(left, 1.0))
            except Empty:
                if not await ensure_async(self.km.is_alive()):
                    raise KernelDied("the kernel died") from None
                continue
            # Anything else on IOPub (the student's prints, busy/idle, the late answer to
            # an interrupted request) is not this answer.
            content = msg.get("content") or {}
            data = content.get("data") or {}
            if (msg["msg_type"] == "comm_msg" and content.get("comm_id") == self._comm_id
                    and isinstance(data, dict) and data.get("id") == request_id):
                return data.get("answer"), bytes((msg.get("buffers") or [b""])[0])

    def handle_comm_msg(self, outs, msg, cell_index):
        content = msg.get("content") or {}
        if msg.get("msg_type") == "comm_open" and content.get("target_name") == kernel_side.TARGET:
            self._comm_opened = content.get("comm_id")  # `listen` ran in the kernel
        return super().handle_comm_msg(outs, msg, cell_index)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        self._output_bytes += len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in content.get("data", {}).values())
        if self._output_bytes > self.output_limit_kb * 1024:
            if not self._truncated:
                self._truncated = True
                outs.append(new_output("stream", name="stdout", text=(
                    f"\n[output truncated: the notebook printed more than {self.output_limit_kb} KiB]\n")))
            return None
        return super().output(outs, msg, display_id, cell_index)
