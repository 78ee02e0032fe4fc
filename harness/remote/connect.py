"""Reaching an executor: one spawned on this machine, or one in a QEMU guest.

`KVMCONF_EXECUTOR` names it for `--backend remote`: `unix:PATH` is the host end of
the guest's virtio-serial port (QEMU's chardev socket; `KVMCONF_CONSOLE_LOG` is the
guest console, read for why the executor died), and `local` or nothing spawns the
executor here over a socketpair (the tests' way, and this machine's kernel through
the same protocol).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from harness.qemu.console import parse_console
from harness.remote.backend import Channel, RemoteBackend, build_executor

ENV = "KVMCONF_EXECUTOR"
CONSOLE_ENV = "KVMCONF_CONSOLE_LOG"
SOCKET_WAIT_S = 30.0
HELLO_TIMEOUT_S = 300.0  # a guest boots first: the executor says hello once it runs


def spawn_local(timeout_s: float = 30.0) -> RemoteBackend:
    """An executor child of this process, on this machine's kernel; it ends when the backend's
    socket closes (or on `exit()`)."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([str(build_executor()), "-"], stdin=theirs.fileno(), stdout=theirs.fileno(),
                            stderr=subprocess.PIPE, close_fds=True)
    theirs.close()

    def why() -> str:
        try:
            code = proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "it is still running"
        assert proc.stderr is not None
        said = proc.stderr.read().decode(errors="replace").strip()
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return f"{how}{': ' + said if said else ''}"

    backend = RemoteBackend(Channel(ours.fileno(), ours.fileno(), why), timeout_s)
    backend.keep = (ours, proc)
    return backend


def console_reason(path: Path, wait_s: float = 5.0) -> str:
    """What the guest console says about a death: a panic, or how the executor ended.

    The channel closes a moment before the console says why: it is read again until it does.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            verdict = parse_console(path.read_text(errors="replace").splitlines())
        except OSError:
            return ""
        if verdict.panic is not None:
            return f"the guest kernel panicked: {verdict.panic} (console: {path})"
        if verdict.exit_status is not None:
            return f"the executor exited with status {verdict.exit_status} (console: {path})"
        if time.monotonic() > deadline:
            return f"the console says nothing of it yet: {path}"
        time.sleep(0.1)


def connect_unix(path: str, timeout_s: float, console_log: str | None) -> RemoteBackend:
    """The executor behind QEMU's chardev socket at `path`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + SOCKET_WAIT_S
    while True:  # QEMU and this process start together: the socket may not be there yet
        try:
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    why = (lambda: console_reason(Path(console_log))) if console_log else None
    backend = RemoteBackend(Channel(sock.fileno(), sock.fileno(), why), timeout_s, hello_timeout_s=HELLO_TIMEOUT_S)
    backend.keep = (sock,)
    return backend


def from_environment(timeout_s: float) -> RemoteBackend:
    where = os.environ.get(ENV, "local")
    if where.startswith("unix:"):
        return connect_unix(where[5:], timeout_s, os.environ.get(CONSOLE_ENV))
    if where != "local":
        raise ValueError(f"{ENV}={where!r}: expected unix:PATH or local")
    return spawn_local(timeout_s)
