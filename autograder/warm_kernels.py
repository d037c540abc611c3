"""Sandboxed kernels started in advance, for a process that grades many notebooks.

A fresh sandboxed kernel costs about a second and a half before the student's first
line runs: bubblewrap, Python, ipykernel, then NumPy and torch imported by the
notebook. A grading worker (autograder.grade_class) keeps one kernel warm: while it
grades a notebook, the next kernel starts in the background, in its own empty working
folder, with exactly the sandbox `SandboxedExecute` would build (same limits, same
hidden paths, its own uid), and imports NumPy and torch silently. When the next
notebook comes, the student's files are copied into that folder and the kernel is
handed to nbclient as if it had just been started; nbclient shuts it down afterwards
as usual. Each kernel serves one notebook only: nothing but the imports runs in it
before the student's code.

The background thread lives as long as the process: bubblewrap's --die-with-parent
watches the thread that started it.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WarmKernel:
    km: object
    workdir: str
    user: object          # autograder.sandbox.KernelUser or None
    prefix: list
    key: tuple
    hidden: list


class KernelWarmer:
    """At most one kernel kept warm per process, started on a background event loop."""

    imports = "import numpy, torch"

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kernel-warmer", daemon=True)
        self._thread.start()
        self._next = None  # concurrent.futures.Future of a WarmKernel
        self._lock = threading.Lock()  # a Dask worker may grade in several threads
        atexit.register(self.close)

    def close(self) -> None:
        """Shut down the kernel kept warm (at exit; a killed process's sandbox dies with it
        anyway, only its folder stays)."""
        with self._lock:
            future, self._next = self._next, None
        if future is not None:
            with contextlib.suppress(Exception):
                self.discard(future.result(timeout=60))

    # ------------------------------------------------------------ for SandboxedExecute
    @staticmethod
    def key(executor, nb) -> tuple:
        name = executor.kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
        return (name, executor.memory_limit_mb, executor.max_processes,
                executor.file_size_limit_mb, tuple(executor.hidden_paths))

    def prepare(self, executor, nb) -> None:
        """Start the kernel for the next notebook graded with `executor`'s settings."""
        with self._lock:
            if self._next is None:
                self._next = asyncio.run_coroutine_threadsafe(self._start(executor, self.key(executor, nb)),
                                                              self._loop)

    def take(self, executor, source_dir: str, nb) -> WarmKernel | None:
        """The warm kernel, if it fits: same settings, and the student's original folder
        and the course (the current directory) hidden from it, as SandboxedExecute would
        hide them (it was built before they were known)."""
        with self._lock:
            future, self._next = self._next, None
        if future is None:
            return None
        try:
            warm = future.result(timeout=180)
        except Exception as error:
            executor.log.warning("a pre-started kernel failed (%s); starting a fresh one", error)
            return None
        hidden = [Path(os.path.realpath(p)) for p in warm.hidden]
        inside = all(any(Path(os.path.realpath(p)).is_relative_to(h) for h in hidden)
                     for p in (source_dir, os.getcwd()))
        if warm.key != self.key(executor, nb) or not inside:
            self.discard(warm)
            return None
        return warm

    def discard(self, warm: WarmKernel) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(warm.km.shutdown_kernel(now=True), self._loop).result(60)
        shutil.rmtree(warm.workdir, ignore_errors=True)
        if warm.user:
            warm.user.release()

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _hidden(executor) -> list[str]:
        import autograder

        return [os.getcwd(), os.path.dirname(os.path.dirname(autograder.__file__)), os.path.expanduser("~"),
                "/root", "/home", "/tmp", "/var/tmp", tempfile.gettempdir(), *executor.hidden_paths]

    async def _start(self, executor, key) -> WarmKernel:
        from .sandbox import KernelUser, SandboxedKernelManager, sandbox_prefix

        workdir = tempfile.mkdtemp(prefix="course-grading-")
        user = KernelUser() if os.geteuid() == 0 else None
        try:
            if user:
                os.chown(workdir, user.uid, user.uid)
            hidden = self._hidden(executor)
            prefix = sandbox_prefix(workdir, memory_bytes=executor.memory_limit_mb * 2**20,
                                    max_processes=executor.max_processes,
                                    file_bytes=executor.file_size_limit_mb * 2**20,
                                    hidden=hidden, uid=user.uid if user else None)
            km = SandboxedKernelManager(kernel_name=key[0])
            km.prefix, km.kernel_uid = prefix, (user.uid if user else None)
            km.kernel_spec.interrupt_mode = "message"
            km.transport, km.ip = "ipc", os.path.join(workdir, "kernel-ipc")
            km.connection_file = os.path.join(workdir, "kernel.json")
            await km.start_kernel()
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=120)
                if self.imports:
                    reply = await kc.execute_interactive(self.imports, silent=True, store_history=False,
                                                         timeout=120)
                    if reply["content"]["status"] != "ok":
                        raise RuntimeError(f"{self.imports!r} failed in the kernel")
            finally:
                kc.stop_channels()
            return WarmKernel(km, workdir, user, prefix, key, hidden)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            if user:
                user.release()
            raise
