"""The wire format between the host's RemoteBackend and the guest's executor (executor.c).

Small and framed, so a reply can be told from console noise and a short read from a
dead peer: every message is a 16-byte header (magic `KVMX`, protocol version, kind,
sequence number, payload length) and its payload, all little-endian. The executor
speaks first (HELLO: its pid, page size and `uname -r`); after that the host sends a
BATCH of requests and the executor answers with one REPLY carrying every request's
result (the value, or minus the errno) and data, then the kernel's taint mask and the
kernel log records written since the previous reply. A FAILURE says, in words, why
the executor stopped reading (a malformed frame); it exits after sending it.

A request is an op, six 64-bit arguments and optional data (a path, bytes to poke).
Pure: bytes in, bytes out, so the format is tested without a peer.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAGIC = b"KVMX"
VERSION = 1
HEADER = struct.Struct("<4sHHII")  # magic, version, kind, sequence, payload length
MAX_PAYLOAD = 64 << 20  # the executor's limit too
_REQUEST = struct.Struct("<II6Q")  # op, data length, arguments
_COUNT = struct.Struct("<I4x")
_RESULT = struct.Struct("<qI4x")  # result, data length
_HEALTH = struct.Struct("<qI4x")  # taint mask (-1: unreadable), log length
_HELLO = struct.Struct("<III")  # pid, page size, release length
STAT_FIELDS = ("st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
               "st_blksize", "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
_STAT = struct.Struct(f"<{len(STAT_FIELDS)}Q")


class Kind(enum.IntEnum):
    HELLO = 1
    BATCH = 2
    REPLY = 3
    FAILURE = 4


class Op(enum.IntEnum):
    """What a request asks; the arguments are those of the system call of the same name."""

    OPEN = 1  # flags, mode; data: the path
    CLOSE = 2  # fd
    IOCTL = 3  # fd, request, argument
    FSTAT = 4  # fd; reply data: STAT_FIELDS
    READ = 5  # fd, address, length
    WRITE = 6
    PREAD = 7  # fd, address, length, offset
    PWRITE = 8
    MMAP = 9  # address, length, prot, flags, fd, offset
    MUNMAP = 10  # address, length
    MPROTECT = 11  # address, length, prot
    FALLOCATE = 12  # fd, mode, offset, length
    LSEEK = 13  # fd, offset, whence
    FTRUNCATE = 14  # fd, length
    FCNTL = 15  # fd, cmd, argument
    PEEK = 16  # address, length; reply data: the bytes (-EFAULT where unreadable)
    POKE = 17  # address; data: the bytes
    FILL = 18  # address, length, byte
    EXIT = 19  # the executor answers, then exits
    FDS = 20  # reply data: "fd link" lines for each of the executor's open fds
    SLURP = 21  # data: a path; reply data: the whole file (a /proc one, whose size says nothing)
    READV = 22  # fd, address, length (one iovec)
    PREADV = 23  # fd, address, length, offset
    FCHMOD = 24  # fd, mode
    EVENTFD = 25  # a new eventfd: counter 0, close-on-exec
    MADVISE = 26  # address, length, advice
    MBIND = 27  # address, length, mode, nodemask address, maxnode, flags
    GET_MEMPOLICY = 28  # policy address, nodemask address, maxnode, address, flags
    TOUCH = 29  # address, length, fill (a byte; -1: read): in a forked child; the signal that ended it, or 0


class ProtocolError(Exception):
    """A frame that is not ours: wrong magic or version, truncated, or out of order."""


@dataclass(frozen=True)
class Request:
    op: Op
    args: tuple[int, ...] = ()
    data: bytes = b""


@dataclass(frozen=True)
class Answer:
    """One request's outcome: the result or minus the errno, and the data it returned."""

    result: int
    data: bytes = b""


@dataclass(frozen=True)
class Reply:
    """A batch's answers, then the health the executor read after it."""

    answers: tuple[Answer, ...]
    taint: int | None
    log: str


@dataclass(frozen=True)
class Hello:
    pid: int
    page_size: int
    release: str


def _pad(n: int) -> int:
    return -n % 8


def frame(kind: Kind, seq: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, seq, len(payload)) + payload


def parse_header(head: bytes) -> tuple[Kind, int, int]:
    """(kind, sequence, payload length) of a 16-byte header; ProtocolError when it is not one."""
    magic, version, kind, seq, length = HEADER.unpack(head)
    if magic != MAGIC:
        raise ProtocolError(f"not a kvmconf frame (magic {magic!r})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, expected {VERSION}")
    if kind not in Kind.__members__.values() or length > MAX_PAYLOAD:
        raise ProtocolError(f"frame of kind {kind} with {length} bytes")
    return Kind(kind), seq, length


def encode_batch(requests: Sequence[Request]) -> bytes:
    parts = [_COUNT.pack(len(requests))]
    for rq in requests:
        args = [a & 0xFFFF_FFFF_FFFF_FFFF for a in rq.args] + [0] * (6 - len(rq.args))
        parts += [_REQUEST.pack(rq.op, len(rq.data), *args), rq.data, bytes(_pad(len(rq.data)))]
    return b"".join(parts)


def decode_reply(payload: bytes) -> Reply:
    try:
        (count,) = _COUNT.unpack_from(payload, 0)
        at = _COUNT.size
        answers = []
        for _ in range(count):
            result, length = _RESULT.unpack_from(payload, at)
            at += _RESULT.size
            answers.append(Answer(result, payload[at:at + length]))
            at += length + _pad(length)
        taint, log_length = _HEALTH.unpack_from(payload, at)
        at += _HEALTH.size
        log = payload[at:at + log_length].decode(errors="replace")
    except struct.error as e:
        raise ProtocolError(f"truncated reply: {e}") from None
    return Reply(tuple(answers), None if taint < 0 else taint, log)


def decode_hello(payload: bytes) -> Hello:
    pid, page, length = _HELLO.unpack_from(payload, 0)
    return Hello(pid, page, payload[_HELLO.size:_HELLO.size + length].decode(errors="replace"))


def decode_stat(data: bytes) -> dict[str, int]:
    return dict(zip(STAT_FIELDS, _STAT.unpack(data), strict=True))
