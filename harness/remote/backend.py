"""The remote backend: the harness's system calls, made by the executor in the guest.

Same surface as the kernel backend (results, or minus the errno), so cases, rules,
expectations and reports stay on the host, unchanged. Addresses are the executor's:
user memory for a case is laid out there (`memory`), in an arena the backend reserves
at connect time, so a placement's address is known before the executor has mapped it
and its setup travels in the same batch as the call that uses it. Requests whose
answer is not needed at once (setting up a placement, freeing one, closing an fd) wait
in a queue and go with the next request that is; a queued request that fails is raised
then, naming itself.

Every reply carries the kernel's taint and its new log records; `take_log()` and
`taint` give them to the per-case health checks without another round trip.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.abi.linux import PAGE_SIZE, PROT_NONE, U64
from harness.errors import KvmconfError
from harness.host.limits import LA57_FLAGS, LA57_PROBE, limits
from harness.remote.memory import RemoteMemory
from harness.remote.protocol import (
    HEADER,
    Answer,
    Hello,
    Kind,
    Op,
    ProtocolError,
    Reply,
    Request,
    decode_hello,
    decode_reply,
    decode_stat,
    encode_batch,
    frame,
    parse_header,
)
from harness.rules import HostLimits

SOURCE = Path(__file__).with_name("executor.c")
IOCTL_BATCH = 4 * 1024  # ioctls per batch of `ioctls`: each batch answers within the case timeout even under TCG


class ExecutorError(KvmconfError):
    """The executor cannot answer: it died (the guest's console says why) or hung."""

    exit_code = 29


class ExecutorDied(ExecutorError):
    """The executor closed its end: it exited, or the guest kernel panicked."""


class ExecutorHang(ExecutorError):
    """A request got no answer within its timeout: the call hangs in the guest."""


class QueuedCallFailed(OSError):
    """A queued request (placement setup, free, close) failed when it was carried out."""


def build_executor(cache: Path | None = None) -> Path:
    """The static executor binary, compiled once per version of executor.c."""
    from harness.qemu.runner import build_static  # gcc is the QEMU runner's to call

    return build_static(SOURCE, "executor", cache)


def _check(what: str, answer: Answer) -> int:
    if answer.result < 0:
        code = -answer.result
        raise OSError(code, f"{what} in the executor: {os.strerror(code)}")
    return answer.result


class Channel:
    """Frames over a connected stream (a socket, or a pipe pair), with a deadline per read."""

    def __init__(self, rfd: int, wfd: int, why_dead: Callable[[], str] | None = None) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.why_dead = why_dead or (lambda: "")
        self.broken: ExecutorError | None = None
        self.seq = 0

    def send(self, kind: Kind, payload: bytes) -> int:
        self.seq += 1
        data = memoryview(frame(kind, self.seq, payload))
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except (BrokenPipeError, ConnectionResetError):
            self._died("its end of the channel is closed")
        return self.seq

    def receive(self, timeout_s: float, what: str) -> tuple[Kind, int, bytes]:
        deadline = time.monotonic() + timeout_s
        kind, seq, length = parse_header(self._read(HEADER.size, deadline, what, timeout_s))
        payload = self._read(length, deadline, what, timeout_s)
        if kind is Kind.FAILURE:
            self._died(f"it refused a frame: {payload.decode(errors='replace')}")
        return kind, seq, payload

    def _read(self, n: int, deadline: float, what: str, timeout_s: float) -> bytes:
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                self.broken = ExecutorHang(f"hang: no answer within {timeout_s:g} s to {what}")
                raise self.broken
            try:
                chunk = os.read(self.rfd, n - got)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self._died(f"it closed the channel while {what} was pending")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _died(self, detail: str) -> None:
        why = self.why_dead()
        self.broken = ExecutorDied(f"the executor died: {detail}" + (f"; {why}" if why else ""))
        raise self.broken


class RemoteBackend:
    """The kernel under test, through the executor at the other end of `channel`."""

    name = "remote"
    is_model = False

    def __init__(self, channel: Channel, timeout_s: float = 30.0, hello_timeout_s: float | None = None) -> None:
        self.channel = channel
        self.timeout_s = timeout_s
        self.keep: tuple[object, ...] = ()  # what must live as long as the channel (socket, process)
        self._queue: list[tuple[Request, str]] = []
        self._log: list[str] = []
        self.taint: int | None = None
        self.batches = 0  # sent so far: whoever caches what the executor holds can tell it is still so
        kind, _, payload = channel.receive(hello_timeout_s or timeout_s, "the executor's hello")
        if kind is not Kind.HELLO:
            raise ProtocolError(f"expected the executor's hello, got a frame of kind {kind.name}")
        self.hello: Hello = decode_hello(payload)
        self.release = self.hello.release
        self.memory = RemoteMemory(self)

    # -- transport --

    def call(self, requests: Sequence[Request], what: str) -> list[Answer]:
        """Carry out `requests` after the queued ones, in one batch; their answers."""
        if self.channel.broken is not None:
            raise type(self.channel.broken)(f"{self.channel.broken} (before {what})")
        queued, self._queue = self._queue, []
        self.batches += 1
        seq = self.channel.send(Kind.BATCH, encode_batch([rq for rq, _ in queued] + list(requests)))
        while True:  # a reply to a batch whose wait was interrupted (a case's timeout) is stale
            kind, got, payload = self.channel.receive(self.timeout_s, what)
            if kind is not Kind.REPLY or got > seq:
                raise ProtocolError(f"expected reply {seq} to {what}, got a frame of kind {kind.name}, number {got}")
            if got == seq:
                break
        reply: Reply = decode_reply(payload)
        if reply.taint is not None:
            self.taint = reply.taint
        self._log += reply.log.splitlines()
        answers = list(reply.answers)
        for (_, label), answer in zip(queued, answers, strict=False):
            if answer.result < 0:
                code = -answer.result
                raise QueuedCallFailed(code, f"{label} in the executor: {os.strerror(code)}")
        return answers[len(queued):]

    def one(self, op: Op, *args: int, data: bytes = b"", what: str = "") -> Answer:
        return self.call([Request(op, args, data)], what or op.name.lower())[0]

    def later(self, op: Op, *args: int, data: bytes = b"", what: str = "") -> None:
        """Queue a request whose success is assumed; it goes with the next call."""
        self._queue.append((Request(op, args, data), what or op.name.lower()))

    def flush(self) -> None:
        """Carry out the queued requests now (and read the kernel's health)."""
        self.call([], "the queued requests")

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def settle(self) -> None:
        """Flush if anything is queued, so the health read last is that of every call made."""
        if self._queue:
            self.flush()

    def limits(self) -> HostLimits:
        """The guest's own bounds: its /proc and /sys read by the executor, and whether a
        mapping above 2^47 can be made in the executor's address space."""
        def read(path: str) -> str | None:
            (answer,) = self.call([Request(Op.SLURP, data=path.encode())], f"reading {path}")
            return answer.data.decode(errors="replace") if answer.result >= 0 else None

        addr = self.one(Op.MMAP, LA57_PROBE, PAGE_SIZE, PROT_NONE, LA57_FLAGS, -1 & U64, 0).result
        if addr >= 0:
            self.munmap(addr, PAGE_SIZE)
        return limits(read, addr == LA57_PROBE)

    def files(self) -> tuple[list[tuple[int, str]], str]:
        """The executor's open fds with their links, and its /proc/self/maps, in one batch."""
        fds, maps = self.call([Request(Op.FDS), Request(Op.SLURP, data=b"/proc/self/maps")], "the executor's files")
        _check("listing /proc/self/fd", fds)
        _check("reading /proc/self/maps", maps)
        pairs = [line.split(" ", 1) for line in fds.data.decode(errors="replace").splitlines()]
        return [(int(fd), link) for fd, link in pairs], maps.data.decode(errors="replace")

    def take_log(self) -> list[str]:
        """Kernel log records (/dev/kmsg lines) since the last take, as of the last reply."""
        lines, self._log = self._log, []
        return lines

    # -- the Backend protocol --

    def open(self, path: str) -> int:
        return _check(f"open {path}", self.one(Op.OPEN, os.O_RDWR | os.O_CLOEXEC, 0, data=path.encode()))

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        return self.one(Op.IOCTL, fd, request, arg, what=f"ioctl 0x{request:x} on fd {fd}").result

    def ioctls(self, calls: Sequence[tuple[int, int, int]]) -> list[int]:
        """One batch; its size is bounded by the frame's payload, so a long list goes in chunks."""
        out: list[int] = []
        for start in range(0, len(calls), IOCTL_BATCH):
            chunk = calls[start:start + IOCTL_BATCH]
            answers = self.call([Request(Op.IOCTL, c) for c in chunk], f"{len(chunk)} ioctls from fd {chunk[0][0]}")
            out += [a.result for a in answers]
        return out

    def close(self, fd: int) -> None:
        self.later(Op.CLOSE, fd, what=f"close of fd {fd}")

    def fstat(self, fd: int) -> os.stat_result:
        answer = self.one(Op.FSTAT, fd)
        _check(f"fstat of fd {fd}", answer)
        st = decode_stat(answer.data)
        times = [st[f"st_{t}time_ns"] for t in "amc"]
        head = (st["st_mode"], st["st_ino"], st["st_dev"], st["st_nlink"], st["st_uid"], st["st_gid"], st["st_size"],
                *(t // 10**9 for t in times))
        extra = {"st_blksize": st["st_blksize"], "st_blocks": st["st_blocks"], "st_rdev": st["st_rdev"],
                 **{f"st_{t}time": ns / 1e9 for t, ns in zip("amc", times, strict=True)},
                 **{f"st_{t}time_ns": ns for t, ns in zip("amc", times, strict=True)}}
        return os.stat_result(head, extra)

    def read(self, fd: int, addr: int, length: int) -> int:
        return self.one(Op.READ, fd, addr, length).result

    def write(self, fd: int, addr: int, length: int) -> int:
        return self.one(Op.WRITE, fd, addr, length).result

    def pread(self, fd: int, addr: int, length: int, offset: int) -> int:
        return self.one(Op.PREAD, fd, addr, length, offset).result

    def pwrite(self, fd: int, addr: int, length: int, offset: int) -> int:
        return self.one(Op.PWRITE, fd, addr, length, offset).result

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int, addr: int = 0) -> int:
        return self.one(Op.MMAP, addr, length, prot, flags, fd, offset).result

    def madvise(self, addr: int, length: int, advice: int) -> int:
        return self.one(Op.MADVISE, addr, length, advice).result

    def mbind(self, addr: int, length: int, mode: int, nodemask: int, maxnode: int, flags: int) -> int:
        return self.one(Op.MBIND, addr, length, mode, nodemask, maxnode, flags).result

    def get_mempolicy(self, policy: int, nodemask: int, maxnode: int, addr: int, flags: int) -> int:
        return self.one(Op.GET_MEMPOLICY, policy, nodemask, maxnode, addr, flags).result

    def touch(self, addr: int, length: int, fill: int) -> int:
        return self.one(Op.TOUCH, addr, length, fill).result

    def munmap(self, addr: int, length: int) -> int:
        return self.one(Op.MUNMAP, addr, length).result

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int:
        return self.one(Op.FALLOCATE, fd, mode, offset, length).result

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        return self.one(Op.MPROTECT, addr, length, prot).result

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        return self.one(Op.LSEEK, fd, offset, whence).result

    def ftruncate(self, fd: int, length: int) -> int:
        return self.one(Op.FTRUNCATE, fd, length).result

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        return self.one(Op.FCNTL, fd, cmd, arg).result

    def readv(self, fd: int, addr: int, length: int) -> int:
        return self.one(Op.READV, fd, addr, length).result

    def preadv(self, fd: int, addr: int, length: int, offset: int) -> int:
        return self.one(Op.PREADV, fd, addr, length, offset).result

    def fchmod(self, fd: int, mode: int) -> int:
        return self.one(Op.FCHMOD, fd, mode).result

    def eventfd(self) -> int:
        return self.one(Op.EVENTFD).result

    def open_fds(self) -> set[int]:
        return {fd for fd, _ in self.files()[0]}

    def exit(self) -> None:
        """Ask the executor to exit once the queued requests are done."""
        self.call([Request(Op.EXIT)], "exit")

