"""The remote backend against a real executor, spawned on this machine over a socketpair.

What is checked: the wire format on its own (pure); the executor answers every op as the
system call would (result or -errno); placements in the executor's memory behave as
usermem's do locally (the kernel can copy exactly the struct, canaries catch stray
writes, read-only refuses writes); queued requests fail loudly; a dead, hung or
confused executor is a named error, not a hang of the suite.
"""

from __future__ import annotations

import errno
import mmap
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.abi.linux import PAGE_SIZE
from harness.host.backend import KernelBackend
from harness.host.usermem import CANARY, at_guard
from harness.remote.backend import ExecutorDied, ExecutorHang, QueuedCallFailed, RemoteBackend
from harness.remote.connect import spawn_local
from harness.remote.memory import RW
from harness.remote.protocol import (
    HEADER,
    MAGIC,
    VERSION,
    Kind,
    Op,
    ProtocolError,
    Request,
    decode_reply,
    encode_batch,
    parse_header,
)
from tests.kvmdev import needs_kvm

DATA = bytes(range(1, 33))
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
O_RDWR_CLOEXEC = os.O_RDWR | os.O_CLOEXEC


@pytest.fixture
def remote() -> Iterator[RemoteBackend]:
    backend = spawn_local(timeout_s=5.0)
    yield backend
    if backend.channel.broken is None:
        backend.exit()


@pytest.fixture
def scratch(remote: RemoteBackend, tmp_path: Path) -> int:
    """A file of the executor's: write(2) from user memory shows what the kernel can read,
    read(2) into it what the kernel can write."""
    path = tmp_path / "scratch"
    path.write_bytes(bytes(2 * PAGE_SIZE))
    return remote.open(str(path))


def executor_process(remote: RemoteBackend) -> subprocess.Popen[bytes]:
    proc = remote.keep[1]
    assert isinstance(proc, subprocess.Popen)
    return proc


def kernel_reads(remote: RemoteBackend, fd: int, addr: int, n: int) -> bool:
    return remote.pwrite(fd, addr, n, 0) == n


def kernel_writes(remote: RemoteBackend, fd: int, addr: int, data: bytes, tmp: Path) -> int:
    (tmp / "scratch").write_bytes(data)
    return remote.pread(fd, addr, len(data), 0)


# -- the wire format, pure --


def test_header_names_a_foreign_frame() -> None:
    with pytest.raises(ProtocolError, match="magic"):
        parse_header(HEADER.pack(b"HTTP", VERSION, Kind.REPLY, 1, 0))
    with pytest.raises(ProtocolError, match="version 9"):
        parse_header(HEADER.pack(MAGIC, 9, Kind.REPLY, 1, 0))
    assert parse_header(HEADER.pack(MAGIC, VERSION, Kind.REPLY, 7, 40)) == (Kind.REPLY, 7, 40)


def test_batch_layout_is_aligned_and_length_prefixed() -> None:
    """Each request is 56 bytes of op, length and six arguments, then its data padded to 8."""
    payload = encode_batch([Request(Op.OPEN, (2, 0), b"/dev/kvm!"), Request(Op.CLOSE, (-1,))])
    assert struct.unpack_from("<I", payload)[0] == 2
    assert len(payload) == 8 + 56 + 16 + 56
    assert struct.unpack_from("<II6Q", payload, 8 + 56 + 16)[2] == (1 << 64) - 1  # -1 as a word


def test_truncated_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        decode_reply(struct.pack("<I4x", 3))


# -- the executor, on this machine --


def test_hello_names_the_kernel(remote: RemoteBackend) -> None:
    assert remote.release == os.uname().release
    assert remote.hello.page_size == PAGE_SIZE


@needs_kvm
def test_ioctls_answer_as_the_kernel_does(remote: RemoteBackend) -> None:
    local = KernelBackend()
    kvm = remote.open("/dev/kvm")
    here = local.open("/dev/kvm")
    try:
        assert remote.ioctl(kvm, KVM_GET_API_VERSION, 0) == local.ioctl(here, KVM_GET_API_VERSION, 0)
        assert remote.ioctl(kvm, KVM_CREATE_VM, 1 << 40) == local.ioctl(here, KVM_CREATE_VM, 1 << 40) < 0
        assert remote.ioctl(kvm, 0xAEFF, 0) == local.ioctl(here, 0xAEFF, 0) < 0
        vm = remote.ioctl(kvm, KVM_CREATE_VM, 0)
        assert vm > kvm and remote.fstat(vm).st_mode & 0o170000 == 0
        remote.close(vm)
    finally:
        remote.close(kvm)
        local.close(here)
    remote.flush()


def test_file_calls_return_result_or_errno(remote: RemoteBackend, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    fd = remote.open(str(path))
    assert remote.fstat(fd).st_size == 100 == os.stat(path).st_size
    assert remote.ftruncate(fd, 10) == 0 and path.stat().st_size == 10
    assert remote.lseek(fd, 0, os.SEEK_END) == 10
    assert remote.fallocate(fd, 0, 0, PAGE_SIZE) == 0 and path.stat().st_size == PAGE_SIZE
    assert remote.fcntl(fd, 1) == 1  # F_GETFD: FD_CLOEXEC
    buf = remote.memory.alloc(PAGE_SIZE, RW)
    assert remote.pread(fd, buf, 4, 0) == 4 and remote.memory.read(buf, 4) == b"xxxx"
    remote.memory.write(buf, b"abcd")
    assert remote.pwrite(fd, buf, 4, 8) == 4 and path.read_bytes()[8:12] == b"abcd"
    assert remote.read(-1, buf, 1) == -errno.EBADF
    with pytest.raises(FileNotFoundError):
        remote.open(str(tmp_path / "missing"))
    with pytest.raises(OSError, match="Bad file"):
        remote.fstat(-1)
    addr = remote.mmap(fd, PAGE_SIZE, mmap.PROT_READ, mmap.MAP_SHARED, 0)
    assert addr > 0 and remote.memory.read(addr, 4) == b"xxxx"
    assert remote.munmap(addr, PAGE_SIZE) == 0
    assert remote.mprotect(addr, PAGE_SIZE, 0) == -errno.ENOMEM
    remote.close(fd)
    remote.memory.free(buf, PAGE_SIZE)
    remote.flush()


# -- user memory in the executor --


def test_at_guard_matches_the_local_layout(remote: RemoteBackend) -> None:
    """Same geometry as usermem.Placement: the offsets, sizes and the bytes."""
    for data, overhang in ((DATA, 0), (DATA, 1), (bytes(PAGE_SIZE + 100), 0)):
        with at_guard(data, overhang) as local, remote.memory.at_guard(data, overhang) as there:
            assert (there.addr - there.base, there.length, there.visible) == (
                local.addr - local.base, local.length, local.visible)
            assert there.read() == local.read()


def test_the_kernel_reads_exactly_the_struct(remote: RemoteBackend, scratch: int) -> None:
    with remote.memory.at_guard(DATA) as p:
        assert kernel_reads(remote, scratch, p.addr, p.size)
        assert not kernel_reads(remote, scratch, p.addr, p.size + 1)
    with remote.memory.at_guard(DATA, overhang=1) as p:
        assert kernel_reads(remote, scratch, p.addr, p.size - 1)
        assert not kernel_reads(remote, scratch, p.addr, p.size)


def test_canaries_show_kernel_writes(remote: RemoteBackend, scratch: int, tmp_path: Path) -> None:
    with remote.memory.among_canaries(DATA) as p:
        assert p.diff().clean and p.diff().struct_bytes == ()
        assert remote.memory.read(p.addr - 8, 8) == bytes([CANARY]) * 8
        assert kernel_writes(remote, scratch, p.addr + 30, b"\xee" * 4, tmp_path) == 4
        d = p.diff()
        assert d.struct_bytes == (30, 31) and d.outside == (32, 33)


def test_readonly_refuses_kernel_writes(remote: RemoteBackend, scratch: int, tmp_path: Path) -> None:
    with remote.memory.among_canaries(DATA, readonly=True) as p:
        assert kernel_writes(remote, scratch, p.addr, b"\0", tmp_path) == -errno.EFAULT
        assert p.read() == DATA and p.diff().clean


def test_unmapped_faults_and_closed_placements_are_gone(remote: RemoteBackend, scratch: int) -> None:
    hole = remote.memory.unmapped()
    assert not kernel_reads(remote, scratch, hole, 1)
    with pytest.raises(OSError, match="0x"):
        remote.memory.read(hole, 1)
    p = remote.memory.at_guard(DATA)
    base, addr = p.base, p.addr
    p.close()
    assert not kernel_reads(remote, scratch, addr, 1)
    with remote.memory.at_guard(DATA) as again:
        assert again.base == base  # the freed slot, mapped afresh
        assert kernel_reads(remote, scratch, again.addr, again.size)


def test_a_queued_request_that_fails_is_raised_by_name(remote: RemoteBackend) -> None:
    remote.memory.protect(1 << 12, PAGE_SIZE, 0)  # below the arena: not the executor's to change
    with pytest.raises(QueuedCallFailed, match="mprotect of 0x1000"):
        remote.flush()
    remote.flush()  # the failure is reported once


# -- health and failure --


def test_every_reply_carries_taint_and_new_log_lines(remote: RemoteBackend) -> None:
    remote.flush()
    remote.take_log()
    assert remote.taint == int(Path("/proc/sys/kernel/tainted").read_text())
    try:
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write("kvmconf test_remote: a record for the executor\n")
    except OSError as e:
        pytest.skip(f"/dev/kmsg cannot be written: {e.strerror}")
    remote.flush()
    assert any("kvmconf test_remote: a record" in line for line in remote.take_log())
    assert remote.take_log() == []


def test_a_killed_executor_is_named(remote: RemoteBackend) -> None:
    proc = executor_process(remote)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(ExecutorDied, match="killed by signal 9"):
        remote.ioctl(0, 0, 0)
    with pytest.raises(ExecutorDied, match="before ioctl"):
        remote.ioctl(0, 0, 0)


def test_a_hung_call_is_a_hang_of_that_call(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    remote = spawn_local(timeout_s=0.5)
    fd = remote.open(str(fifo))  # read-write: opening does not wait for a writer
    buf = remote.memory.alloc(PAGE_SIZE, RW)
    with pytest.raises(ExecutorHang, match=r"no answer within 0.5 s to read"):
        remote.read(fd, buf, 1)
    with pytest.raises(ExecutorHang):
        remote.flush()
    executor_process(remote).kill()
    executor_process(remote).wait()


def test_a_malformed_frame_ends_the_executor_with_its_reason(remote: RemoteBackend) -> None:
    os.write(remote.channel.wfd, b"GET / HTTP/1.1\r\n")
    with pytest.raises(ExecutorDied, match="refused a frame: bad magic"):
        remote.channel.receive(5.0, "the answer to garbage")


def test_a_reply_to_an_interrupted_wait_is_dropped(remote: RemoteBackend) -> None:
    """A case's timeout can interrupt a wait; the late reply must not answer the next call."""
    remote.channel.send(Kind.BATCH, encode_batch([Request(Op.FCNTL, (0, 1))]))  # F_GETFD of stdin: 0; never awaited
    assert remote.lseek(-1, 0, 0) == -errno.EBADF
