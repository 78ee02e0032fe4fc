"""The model backend: KVM's memory-attributes and guest_memfd uAPI in pure Python.

It answers the harness's system calls as a faithful 7.3 x86 kernel with
CONFIG_KVM_SW_PROTECTED_VM would, extended by whatever the ABI facts of the active
revision define (which ioctls exist on which fd, struct layouts, caps, conversion
flags), with the hygiene rules kept: reserved words and pads are checked, so the known
findings of released kernels are not the model's. It needs no /dev/kvm:

- the same ioctl numbers; user pointers are ints, read and written with exactly the
  struct's size through `process_vm_readv`/`process_vm_writev` (EFAULT, no fault);
- fds are real (one `/dev/null` per model object), so fd-leak checks see them; an fd
  that is not the model's is the kernel's, and its calls go to the kernel;
- state (VMs with their type, guest_memfds with size and flags, memslots and bindings,
  attributes per page) so a rejected call can be seen to leave no trace.

Checks are named (see `harness.model.deviation`) so that a mutant can deviate in one.
"""

from __future__ import annotations

import errno
import itertools
import mmap as _mmap
import os
import stat
from collections.abc import Callable, Sequence
from functools import partial

from harness.abi.facts import AbiFacts, Ioctl, Struct
from harness.abi.fdkind import FdKind
from harness.abi.ioc import Dir
from harness.abi.linux import (
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_MODE_MASK,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_UNSHARE_RANGE,
    FALLOC_FL_WRITE_ZEROES,
    FALLOC_FL_ZERO_RANGE,
    FIONREAD,
    MADV_COLLAPSE,
    MADV_HUGEPAGE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    MAP_TYPE,
    MPOL_DEFAULT,
    MPOL_F_ADDR,
    MPOL_MAX,
    PAGE_SIZE,
    S64_MAX,
    SIGBUS,
    U64,
)
from harness.host.backend import KernelBackend
from harness.host.usermem import LocalMemory
from harness.model import coalesced_mmio, dirty_log, enable_cap, guest, ioeventfd, irqfd, memslot1, prefault, vcpu
from harness.model.deviation import FAITHFUL, Deviation
from harness.model.state import GmemState, Handle, Slot, VcpuState, VmState
from harness.model.usercopy import copy_from_user, copy_to_user
from harness.rules import MAX_GPA_BITS, USER_MEM_SLOTS, USER_VA_BITS, HostLimits

PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
VM_TYPES = (0, 1)  # KVM_X86_DEFAULT_VM and KVM_X86_SW_PROTECTED_VM
PRIVATE_VM_TYPES = frozenset({1})  # VMs with private memory: KVM_MEMORY_ATTRIBUTE_PRIVATE, one address space
MEM_MAX_NR_PAGES = (1 << 31) - 1
# Caps whose value is a number, the same at both scopes.
VALUE_CAPS = {"KVM_CAP_MAX_VCPUS": vcpu.MAX_VCPUS, "KVM_CAP_MAX_VCPU_ID": vcpu.MAX_VCPU_IDS, "KVM_CAP_NR_MEMSLOTS": USER_MEM_SLOTS,
              "KVM_CAP_NR_VCPUS": os.cpu_count() or 1}
# Caps of features the model has, whatever the VM: 1 at both scopes.
FEATURE_CAPS = frozenset({"KVM_CAP_CHECK_EXTENSION_VM", "KVM_CAP_MEMORY_FAULT_INFO", "KVM_CAP_PRE_FAULT_MEMORY"})
# Conversion flags of KVM_SET_MEMORY_ATTRIBUTES2 (v7); each counts once the facts define it.
CONVERSION_FLAGS = ("KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE",)


FAMILIES = (vcpu, guest, prefault, memslot1, enable_cap, dirty_log, coalesced_mmio, ioeventfd, irqfd)


class Refused(Exception):
    """A check failed: the call answers -errno."""

    def __init__(self, code: int) -> None:
        super().__init__(errno.errorcode.get(code, code))
        self.errno = code


def wraps(a: int, b: int) -> bool:
    return a + b > U64


class ModelBackend:
    """A KVM in this process, one per session; `deviation` makes it a mutant."""

    name = "model"
    is_model = True
    memory = LocalMemory()

    def __init__(self, facts: AbiFacts, deviation: Deviation = FAITHFUL, mutant: str | None = None) -> None:
        self.facts = facts
        self.dev = deviation
        self.release = f"model-{facts.profile}" + (f" (mutant {mutant})" if mutant else "")
        self.kernel = KernelBackend()
        self.files: dict[int, Handle] = {}
        self.numbers = {io.number: name for name, io in facts.ioctls.items()}
        for name, macro, size in deviation.aliases:
            if name in facts.ioctls:
                io = facts.ioctls[name]
                self.numbers[facts.encoding.ioc(Dir.from_macro(macro), io.type, io.nr, size)] = name
        self.cap_names = {num: name for name, num in facts.cap_numbers(model=True).items()}
        self.attribute_caps = {c for io in facts.ioctls.values() for c in io.attributes_caps.values()}
        self.existence_caps = {c for io in facts.ioctls.values() for c in io.caps.values()}
        self.inodes = itertools.count(1)
        self.maps: dict[int, tuple[int, GmemState, int]] = {}  # guest_memfd mappings: address → (length, file, offset)
        self.asked = 0
        self.handlers: dict[str, Callable[[Handle, int], int]] = {
            "KVM_CHECK_EXTENSION": self.check_extension,
            "KVM_CREATE_VM": self.create_vm,
            "KVM_CREATE_GUEST_MEMFD": self.create_guest_memfd,
            "KVM_SET_USER_MEMORY_REGION2": self.set_memory_region,
            "KVM_SET_MEMORY_ATTRIBUTES": self.set_attributes_v1,
            "KVM_SET_MEMORY_ATTRIBUTES2": self.set_attributes_v2,
        }
        # the ioctls of the families with a module of their own (harness/model/<family>.py)
        for family in FAMILIES:
            self.handlers.update({n: partial(fn, self) for n, fn in family.HANDLERS.items()})

    # -- fds ----------------------------------------------------------------------

    def open_handle(self, handle: Handle) -> int:
        """A real fd for a model object: /dev/kvm and VM fds are O_CLOEXEC, a guest_memfd is not."""
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        # Python makes every fd close-on-exec; a guest_memfd is not (get_unused_fd_flags(0))
        os.set_inheritable(fd, handle.kind == FdKind.GUEST_MEMFD and not self.dev.skips("fd.no-cloexec", handle.kind))
        self.files[fd] = handle
        return fd

    def limits(self) -> HostLimits:
        """The model's kernel: 4-level paging and no TDP, as the rules' defaults."""
        return HostLimits()

    def open(self, path: str) -> int:
        """The KVM device: the model's, whatever `path` says; /dev/kvm need not exist."""
        return self.open_handle(Handle(FdKind.SYSTEM))

    def close(self, fd: int) -> None:
        handle = self.files.pop(fd, None)
        if handle is not None and handle.gmem is not None:
            handle.gmem.close()
        os.close(fd)

    # -- checks -------------------------------------------------------------------

    def check(self, name: str, bad: bool, fd: str, code: int = errno.EINVAL) -> None:
        """Refuse with `code` when `bad`, unless the deviation leaves this check out."""
        if bad and not self.dev.skips(name, fd):
            raise Refused(self.dev.errno_for(name, fd, code))

    def copy_in(self, name: str, arg: int, fd: str) -> dict[str, int]:
        """copy_from_user of the ioctl's struct: exactly its size, EFAULT where unreadable."""
        io = self.facts.ioctls[name]
        assert io.struct is not None
        struct = self.facts.structs[io.struct]
        data = copy_from_user(arg, self.dev.copy.get(name, struct.size))
        self.check(f"{name}.copy", data is None, fd, errno.EFAULT)
        raw = (data or b"")[: struct.size]
        return struct.unpack(raw + bytes(struct.size - len(raw)))

    def zero_words(self, name: str, struct: Struct, values: dict[str, int], fd: str) -> None:
        """Reserved words, pads and output fields must be zero when sent."""
        for w in struct.reserved_words():
            self.check(f"{name}.{w.label}", values[w.label] != 0, fd)

    # -- ioctl --------------------------------------------------------------------

    def ioctl(self, fd: int, request: int, arg: int) -> int:
        handle = self.files.get(fd)
        if handle is None:
            return self.kernel.ioctl(fd, request, arg)
        if handle.gmem is not None and request == FIONREAD and self.dev.skips("FIONREAD.anon", FdKind.GUEST_MEMFD):
            # a mutant: do_vfs_ioctl() answering as for a regular file that is no anon inode
            return 0 if copy_to_user(arg, handle.gmem.size.to_bytes(4, "little", signed=True)) else -errno.EFAULT
        name = self.numbers.get(request & 0xFFFFFFFF)
        if name is None or name not in self.handlers or not self.exists(name, handle.kind):
            # kvm_dev_ioctl's and kvm_vcpu_ioctl's x86 default is -EINVAL; a VM's and a guest_memfd's is -ENOTTY
            code = errno.EINVAL if handle.kind in (FdKind.SYSTEM, FdKind.VCPU) else errno.ENOTTY
            return -self.dev.errno_for("ioctl.unknown", handle.kind, code)
        try:
            result = self.handlers[name](handle, arg & U64)
        except Refused as r:
            return -r.errno
        self.after(name, arg)
        return result

    def ioctls(self, calls: Sequence[tuple[int, int, int]]) -> list[int]:
        return [self.ioctl(fd, request, arg) for fd, request, arg in calls]

    @staticmethod
    def vm_of(handle: Handle) -> VmState:
        """The VM a VM fd or a guest_memfd belongs to."""
        vm = handle.vm if handle.gmem is None else handle.gmem.vm
        assert vm is not None, handle.kind
        return vm

    def exists(self, name: str, kind: str) -> bool:
        return kind in self.facts.ioctls[name].fds or kind in self.dev.extra_fds.get(name, ())

    def after(self, name: str, arg: int) -> None:
        """What a mutant writes after a successful call (nothing, when faithful)."""
        io = self.facts.ioctls[name]
        if io.struct is None:
            return
        size = self.facts.structs[io.struct].size
        if name in self.dev.echo:
            copy_to_user(arg, bytes(size))
        if name in self.dev.write_past:
            copy_to_user(arg + size, bytes(self.dev.write_past[name]))

    # -- caps ---------------------------------------------------------------------

    def check_extension(self, handle: Handle, arg: int) -> int:
        """KVM_CHECK_EXTENSION: the argument is a long, compared whole; unknown caps → 0."""
        name = self.cap_names.get(arg & self.dev.narrow.get("KVM_CHECK_EXTENSION.cap", U64))
        if name is None:
            return 0
        mode = self.dev.caps.get(name)
        if mode == "zero":
            return 0
        if mode == "flag":  # a value cap answering as a feature flag
            return 1
        if mode == "system":
            return self.cap_value(name, None)
        if mode == "unstable":
            self.asked += 1
            return self.cap_value(name, handle.vm) if self.asked % 2 else 0
        return self.cap_value(name, handle.vm)

    def cap_value(self, name: str, vm: VmState | None) -> int:
        """A cap's value on /dev/kvm (vm None) or on a VM, as the model's kernel has it."""
        name = self.facts.cap_mirrors.get(name, name)
        if name == "KVM_CAP_VM_TYPES":
            return sum(1 << t for t in VM_TYPES)
        if name == "KVM_CAP_MULTI_ADDRESS_SPACE":
            return self.address_spaces(vm)
        if name in self.attribute_caps:
            return self.attributes(vm)
        for io in self.facts.ioctls.values():
            if io.flags_cap == name:
                return self.flags(io, vm)
        if name in VALUE_CAPS:
            return VALUE_CAPS[name]
        if name == "KVM_CAP_COALESCED_MMIO":  # the ring's page in the vCPU mmap (kvm_main.c:4943-4944)
            return self.facts.constants["KVM_COALESCED_MMIO_PAGE_OFFSET"]
        family_caps: dict[str, int] = {k: v for f in FAMILIES for k, v in getattr(f, "CAPS", {}).items()}
        if name in family_caps:
            return family_caps[name]
        return 1 if name in self.existence_caps or name in FEATURE_CAPS else 0

    def attributes(self, vm: VmState | None) -> int:
        """kvm_supported_mem_attributes(): PRIVATE for KVM as a whole and private-memory VMs."""
        private = self.facts.constants.get("KVM_MEMORY_ATTRIBUTE_PRIVATE", 0)
        return private if vm is None or vm.private else 0

    def flags(self, io: Ioctl, vm: VmState | None) -> int:
        """The flags an ioctl accepts: guest_memfd flags (no INIT_SHARED on a private-memory
        VM), or the conversion flags the revision defines."""
        c = self.facts.constants
        if io.name == "KVM_CREATE_GUEST_MEMFD":
            shared = 0 if vm is not None and vm.private else c.get("GUEST_MEMFD_FLAG_INIT_SHARED", 0)
            return c.get("GUEST_MEMFD_FLAG_MMAP", 0) | shared
        if io.flags_cap is None:
            return 0
        bits = 0
        for flag in CONVERSION_FLAGS:
            bits |= c.get(flag, 0)
        return bits

    @staticmethod
    def address_spaces(vm: VmState | None) -> int:
        """kvm_arch_nr_memslot_as_ids(): SMM's second address space, except with private memory."""
        return 1 if vm is not None and vm.private else 2

    # -- /dev/kvm -------------------------------------------------------------------

    def create_vm(self, handle: Handle, arg: int) -> int:
        """KVM_CREATE_VM: the type is an unsigned long; it must be < 32 and advertised."""
        mask = sum(1 << t for t in VM_TYPES) | self.dev.extra("KVM_CREATE_VM.type", "system")
        arg &= self.dev.narrow.get("KVM_CREATE_VM.type", U64)
        self.check("KVM_CREATE_VM.type", not (arg < 32 and mask >> arg & 1), "system")
        return self.open_handle(Handle(FdKind.VM, vm=VmState(arg, arg in PRIVATE_VM_TYPES)))

    # -- VM ioctls -------------------------------------------------------------------

    def create_guest_memfd(self, handle: Handle, arg: int) -> int:
        """kvm_gmem_create(): flags this VM supports; size > 0 as a signed loff_t and page
        aligned; reserved words zero (the hygiene rule 7.3 does not keep)."""
        name, fd = "KVM_CREATE_GUEST_MEMFD", handle.kind
        vm = self.vm_of(handle)
        io = self.facts.ioctls[name]
        assert io.struct is not None
        v = self.copy_in(name, arg, fd)
        size, flags = v["size"], v["flags"]
        try:
            self.check(f"{name}.flags", bool(flags & ~(self.flags(io, vm) | self.dev.extra(f"{name}.flags", fd))), fd)
            self.check(f"{name}.size", size == 0 or size >> 63 == 1, fd)
            self.check(f"{name}.align", size % PAGE_SIZE != 0, fd)
            self.zero_words(name, self.facts.structs[io.struct], v, fd)
        except Refused:
            if name in self.dev.keep_rejected:
                self.open_handle(Handle(FdKind.GUEST_MEMFD, gmem=GmemState(vm, size, flags, next(self.inodes))))
            raise
        return self.open_handle(Handle(FdKind.GUEST_MEMFD, gmem=GmemState(vm, size, flags, next(self.inodes))))

    def set_memory_region(self, handle: Handle, arg: int) -> int:
        """KVM_SET_USER_MEMORY_REGION2 in kvm_set_memory_region()'s order, then the
        guest_memfd binding (kvm_gmem_prepare/commit_memory_region)."""
        name, fd = "KVM_SET_USER_MEMORY_REGION2", handle.kind
        return self.memslot(name, fd, self.vm_of(handle), self.copy_in(name, arg, fd))

    def memslot(self, name: str, fd: str, vm: VmState, v: dict[str, int]) -> int:
        """A memslot call with its struct copied in (as v2); a mutant may keep a rejected slot."""
        try:
            return self._set_memory_region(name, fd, vm, v)
        except Refused:
            if name in self.dev.keep_rejected and v["memory_size"]:
                vm.add_slot(Slot(v["slot"], v["flags"], v["guest_phys_addr"], v["memory_size"], v["userspace_addr"]), self.space(v["slot"]))
            raise

    def _set_memory_region(self, name: str, fd: str, vm: VmState, v: dict[str, int]) -> int:
        c = self.facts.constants
        log, ro, gmem_flag = c["KVM_MEM_LOG_DIRTY_PAGES"], c["KVM_MEM_READONLY"], c["KVM_MEM_GUEST_MEMFD"]
        io = self.facts.ioctls[name]
        assert io.struct is not None
        self.zero_words(name, self.facts.structs[io.struct], v, fd)
        slot, flags = v["slot"], v["flags"]
        gpa, size, uaddr, offset = v["guest_phys_addr"], v["memory_size"], v["userspace_addr"], v["guest_memfd_offset"]
        bind = bool(flags & gmem_flag)
        self.check(f"{name}.slot", slot & 0xFFFF >= USER_MEM_SLOTS or slot >> 16 >= self.address_spaces(vm), fd)
        valid = gmem_flag if bind else log | ro | gmem_flag
        self.check(f"{name}.flags", bool(flags & ~(valid | self.dev.extra(f"{name}.flags", fd))), fd)
        self.check(f"{name}.size-align", size % PAGE_SIZE != 0, fd)
        self.check(f"{name}.gpa-align", gpa % PAGE_SIZE != 0, fd)
        self.check(f"{name}.uaddr", uaddr % PAGE_SIZE != 0 or uaddr + size > (1 << USER_VA_BITS) - PAGE_SIZE, fd)
        if bind:
            self.check(f"{name}.offset", offset % PAGE_SIZE != 0 or wraps(offset, size), fd)
        self.check(f"{name}.gpa-wrap", wraps(gpa, size), fd)
        self.check(f"{name}.npages", size // PAGE_SIZE > MEM_MAX_NR_PAGES, fd)
        old, space = vm.slots.get(slot), self.space(slot)
        if size == 0:
            self.check(f"{name}.delete", old is None, fd)
            vm.drop_slot(slot, space)
            return 0
        if old is not None:
            # an existing slot: only moved or its dirty logging changed; guest_memfd slots are immutable
            self.check(f"{name}.modify", old.gmem is not None or old.size != size or old.uaddr != uaddr
                       or bool((old.flags ^ flags) & (ro | gmem_flag)), fd)
            self.check(f"{name}.overlap", vm.overlapping(space, gpa, size, skip=slot), fd, errno.EEXIST)
            vm.drop_slot(slot, space)
            if not flags & log:
                old.dirty = 0  # the bitmap goes with the flag (kvm_main.c:1690-1691)
            elif not old.flags & log:
                old.dirty = dirty_log.new_bitmap(self, vm, size // PAGE_SIZE)
            old.gpa, old.flags = gpa, flags
            vm.add_slot(old, space)
            return 0
        self.check(f"{name}.overlap", vm.overlapping(space, gpa, size), fd, errno.EEXIST)
        gmem = self.bound_file(name, fd, vm, v["guest_memfd"], offset, size) if bind else None
        self.check(f"{name}.max-gfn", gpa + size > 1 << MAX_GPA_BITS, fd)
        if gmem is not None:
            bound = any(s.overlaps_file(gmem, offset, size) for s in vm.slots.values())
            self.check(f"{name}.bound", bound, fd, errno.EEXIST)
        dirty = dirty_log.new_bitmap(self, vm, size // PAGE_SIZE) if flags & log else 0
        vm.add_slot(Slot(slot, flags, gpa, size, uaddr, gmem, offset, dirty), space)
        return 0

    def space(self, slot: int) -> int:
        """The address space whose map holds a slot: `slot >> 16` (a mutant cuts it, merging SMM's map into the first)."""
        return slot >> 16 & self.dev.narrow.get("KVM_SET_USER_MEMORY_REGION2.as_id", U64)

    def bound_file(self, name: str, fd: str, vm: VmState, number: int, offset: int, size: int) -> GmemState | None:
        """kvm_gmem_prepare_memory_region(): an open fd (EBADF), a guest_memfd of this VM
        (EINVAL), the range inside the file (EINVAL)."""
        handle = self.files.get(number)
        if handle is None:
            self.check(f"{name}.fd", not _is_open(number), fd, errno.EBADF)
            self.check(f"{name}.not-gmem", True, fd)
            return None
        self.check(f"{name}.not-gmem", handle.kind != FdKind.GUEST_MEMFD, fd)
        gmem = handle.gmem
        assert gmem is not None
        self.check(f"{name}.other-vm", gmem.vm is not vm, fd)
        self.check(f"{name}.past-eof", offset + size > gmem.size, fd)
        return gmem

    def set_attributes_v1(self, handle: Handle, arg: int) -> int:
        return self.set_attributes("KVM_SET_MEMORY_ATTRIBUTES", handle, arg)

    def set_attributes_v2(self, handle: Handle, arg: int) -> int:
        return self.set_attributes("KVM_SET_MEMORY_ATTRIBUTES2", handle, arg)

    def set_attributes(self, name: str, handle: Handle, arg: int) -> int:
        """KVM_SET_MEMORY_ATTRIBUTES{,2} on a VM (address is a gpa) or a guest_memfd
        (address is a file offset, inside the file)."""
        fd = handle.kind
        io = self.facts.ioctls[name]
        assert io.struct is not None
        vm = self.vm_of(handle)
        v = self.copy_in(name, arg, fd)
        addr, size, attributes = v["address"], v["size"], v["attributes"]
        ranges = vm.attributes if handle.gmem is None else handle.gmem.attributes
        try:
            allowed = self.flags(io, vm) | self.dev.extra(f"{name}.flags", fd)
            self.check(f"{name}.flags", bool(v["flags"] & ~allowed), fd)
            supported = self.attributes(vm) | self.dev.extra(f"{name}.attributes", fd)
            self.check(f"{name}.attributes", bool(attributes & ~supported), fd)
            self.check(f"{name}.size", size == 0, fd)
            self.check(f"{name}.wrap", wraps(addr, size), fd)
            self.check(f"{name}.align-address", addr % PAGE_SIZE != 0, fd)
            self.check(f"{name}.align-size", size % PAGE_SIZE != 0, fd)
            self.zero_words(name, self.facts.structs[io.struct], v, fd)
            if handle.gmem is not None:
                self.check(f"{name}.past-eof", addr + size > handle.gmem.size, fd)
        except Refused:
            if name in self.dev.keep_rejected:  # a mutant: the rejected range's attributes change anyway
                ranges.set(addr >> PAGE_SHIFT, (addr + size) >> PAGE_SHIFT, attributes)
            raise
        ranges.set(addr >> PAGE_SHIFT, (addr + size) >> PAGE_SHIFT, attributes)
        return 0

    # -- the guest_memfd file ------------------------------------------------------------

    def gmem(self, fd: int) -> GmemState | None:
        handle = self.files.get(fd)
        return handle.gmem if handle is not None else None

    def fstat(self, fd: int) -> os.stat_result:
        """A guest_memfd: S_IFREG|0600, st_size its size, st_blksize the page size."""
        gmem = self.gmem(fd)
        if gmem is None:
            return self.kernel.fstat(fd)
        fields = (stat.S_IFREG | 0o600, 1 if self.dev.one_inode else gmem.ino, 0, 1, os.getuid(), os.getgid(), gmem.size, 0, 0, 0)
        return os.stat_result(fields, {"st_blksize": self.dev.blksize or PAGE_SIZE, "st_blocks": 0})

    def _file_call(self, call: str, code: int, offset: int | None = None) -> int:
        """read/write (no such operations: EINVAL) and pread/pwrite (not seekable: ESPIPE,
        after a negative position's EINVAL)."""
        try:
            if offset is not None:
                self.check(f"{call}.position", offset < 0, "guest_memfd")
            self.check(call, True, "guest_memfd", code)
        except Refused as r:
            return -r.errno
        return 0

    def read(self, fd: int, addr: int, length: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.read(fd, addr, length)
        return self._file_call("read", errno.EINVAL)

    def write(self, fd: int, addr: int, length: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.write(fd, addr, length)
        return self._file_call("write", errno.EINVAL)

    def pread(self, fd: int, addr: int, length: int, offset: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.pread(fd, addr, length, offset)
        return self._file_call("pread", errno.ESPIPE, offset)

    def pwrite(self, fd: int, addr: int, length: int, offset: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.pwrite(fd, addr, length, offset)
        return self._file_call("pwrite", errno.ESPIPE, offset)

    def readv(self, fd: int, addr: int, length: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.readv(fd, addr, length)
        return self._file_call("readv", errno.EINVAL)

    def preadv(self, fd: int, addr: int, length: int, offset: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.preadv(fd, addr, length, offset)
        return self._file_call("preadv", errno.ESPIPE, offset)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """No llseek in kvm_gmem_fops: ESPIPE."""
        if self.gmem(fd) is None:
            return self.kernel.lseek(fd, offset, whence)
        return self._file_call("lseek", errno.ESPIPE)

    def ftruncate(self, fd: int, length: int) -> int:
        """kvm_gmem_setattr() refuses every change: EINVAL."""
        if self.gmem(fd) is None:
            return self.kernel.ftruncate(fd, length)
        return self._file_call("ftruncate", errno.EINVAL)

    def fchmod(self, fd: int, mode: int) -> int:
        if self.gmem(fd) is None:
            return self.kernel.fchmod(fd, mode)
        return self._file_call("fchmod", errno.EINVAL)

    def open_fds(self) -> set[int]:
        """The model's fds are this process's."""
        return self.kernel.open_fds()

    def eventfd(self) -> int:
        """A real eventfd: the model's irqfd and ioeventfd take this process's fds."""
        return self.kernel.eventfd()

    def fcntl(self, fd: int, cmd: int, arg: int) -> int:
        """The model's fds are real: their fd flags are the ones open_handle gave them."""
        return self.kernel.fcntl(fd, cmd, arg)

    def mmap(self, fd: int, length: int, prot: int, flags: int, offset: int, addr: int = 0) -> int:
        """do_mmap() then kvm_gmem_mmap(): noexec mount (EPERM), GUEST_MEMFD_FLAG_MMAP
        (ENODEV), MAP_SHARED (EINVAL); a success maps the file's pages (a memfd behind it). A
        vCPU's fd maps its `kvm_run` (kvm_vcpu_mmap: pages within the mmap size), and its dirty
        ring shared at KVM_DIRTY_LOG_PAGE_OFFSET once the VM has one."""
        handle = self.files.get(fd)
        if handle is not None and handle.vcpu is not None:
            return self.vcpu_mmap(handle, handle.vcpu, length, prot, flags, offset)
        gmem = self.gmem(fd)
        if gmem is None:
            return self.kernel.mmap(fd, length, prot, flags, offset, addr)
        try:
            self.check("mmap.length", length == 0, "guest_memfd")
            kind = flags & MAP_TYPE
            self.check("mmap.type", kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE), "guest_memfd")
            self.check("mmap.validate", kind == MAP_SHARED_VALIDATE and bool(flags & MAP_SYNC), "guest_memfd", errno.EOPNOTSUPP)
            self.check("mmap.noexec", bool(prot & _mmap.PROT_EXEC), "guest_memfd", errno.EPERM)
            no_mmap = not gmem.flags & self.facts.constants.get("GUEST_MEMFD_FLAG_MMAP", 0)
            self.check("mmap.flag", no_mmap, "guest_memfd", errno.ENODEV)
            self.check("mmap.shared", not flags & MAP_SHARED, "guest_memfd")
        except Refused as r:
            return -r.errno
        at = self.kernel.mmap(gmem.backing(), length, prot, MAP_SHARED | (flags & MAP_FIXED), offset, addr)
        if at >= 0:
            self.maps[at] = (length, gmem, offset)
        return at

    def vcpu_mmap(self, handle: Handle, cpu: VcpuState, length: int, prot: int, flags: int, offset: int) -> int:
        """do_mmap() (length, alignment; the anon inode pseudo fs is noexec: EPERM) then
        kvm_vcpu_mmap(): a first or last page in the dirty ring only MAP_SHARED (EINVAL)."""
        first = self.facts.constants["KVM_DIRTY_LOG_PAGE_OFFSET"]
        pages = range(first, first + self.vm_of(handle).dirty_ring // PAGE_SIZE)
        in_ring = offset // PAGE_SIZE in pages or (offset + length - 1) // PAGE_SIZE in pages
        try:
            self.check("mmap.length", length == 0 or bool(offset % PAGE_SIZE), handle.kind)
            self.check("mmap.noexec", bool(prot & _mmap.PROT_EXEC), handle.kind, errno.EPERM)
            self.check("mmap.dirty-ring-shared", in_ring and not flags & MAP_SHARED, handle.kind)
        except Refused as r:
            return -r.errno
        addr = self.kernel.mmap(-1, length, prot, MAP_SHARED | MAP_ANONYMOUS, 0)
        if addr >= 0 and offset == 0:
            cpu.run_addr = addr  # where KVM_RUN reports its exits
        if addr >= 0 and offset == first * PAGE_SIZE and pages:
            cpu.dirty_ring_addr = addr  # where a guest write pushes its entries
            self.vm_of(handle).ring_vcpus.append(cpu)
        return addr

    def munmap(self, addr: int, length: int) -> int:
        for start in [a for a in self.maps if addr <= a < addr + length]:
            del self.maps[start]
        return self.kernel.munmap(addr, length)

    def mapped(self, addr: int) -> tuple[GmemState, int] | None:
        """The guest_memfd mapped at `addr` and the file offset there, if one is."""
        for start, (length, gmem, offset) in self.maps.items():
            if start <= addr < start + length:
                return gmem, offset + addr - start
        return None

    def madvise(self, addr: int, length: int, advice: int) -> int:
        """On a guest_memfd mapping, mm/'s answers: MADV_HUGEPAGE only marks the VMA,
        MADV_COLLAPSE is refused (collapse_possible: file_thp_enabled says no to the anon
        inode); the rest as the memfd behind it answers."""
        if self.mapped(addr) is None:
            return self.kernel.madvise(addr, length, advice)
        try:
            self.check("madvise.collapse", advice == MADV_COLLAPSE, "guest_memfd")
        except Refused as r:
            return -r.errno
        return 0 if advice in (MADV_HUGEPAGE, MADV_COLLAPSE) else self.kernel.madvise(addr, length, advice)

    def mbind(self, addr: int, length: int, mode: int, nodemask: int, maxnode: int, flags: int) -> int:
        """kernel_mbind() on a guest_memfd mapping, the model's nodes with memory those of
        its limits: sanitize_mpol_flags (mode), mpol_new (MPOL_DEFAULT takes no nodes),
        mpol_set_nodemask (nodes with memory); kvm_gmem_set_policy keeps it per page."""
        place = self.mapped(addr)
        if place is None:
            return self.kernel.mbind(addr, length, mode, nodemask, maxnode, flags)
        raw = copy_from_user(nodemask, 8) if nodemask else bytes(8)
        if raw is None:
            return -errno.EFAULT
        nodes = int.from_bytes(raw, "little") & ((1 << (maxnode - 1)) - 1 if maxnode else 0)
        try:
            self.check("mbind.mode", mode >= MPOL_MAX, "guest_memfd")
            self.check("mbind.default-nodes", mode == MPOL_DEFAULT and nodes != 0, "guest_memfd")
            self.check("mbind.nodes", mode != MPOL_DEFAULT and not nodes & self.limits().memory_nodes, "guest_memfd")
        except Refused as r:
            return -r.errno
        gmem, offset = place
        memory = self.limits().memory_nodes
        for index in range(offset // PAGE_SIZE, (offset + length + PAGE_SIZE - 1) // PAGE_SIZE):
            gmem.policy[index] = (mode, nodes & memory)
        return 0

    def get_mempolicy(self, policy: int, nodemask: int, maxnode: int, addr: int, flags: int) -> int:
        """MPOL_F_ADDR on a guest_memfd mapping: the policy kvm_gmem_get_policy looks up
        for the page (none set: MPOL_DEFAULT, no nodes)."""
        place = self.mapped(addr)
        if place is None or flags != MPOL_F_ADDR:
            return self.kernel.get_mempolicy(policy, nodemask, maxnode, addr, flags)
        gmem, offset = place
        mode, nodes = gmem.policy.get(offset // PAGE_SIZE, (MPOL_DEFAULT, 0))
        if not copy_to_user(policy, mode.to_bytes(4, "little")) or not copy_to_user(nodemask, nodes.to_bytes(8, "little")):
            return -errno.EFAULT
        return 0

    def touch(self, addr: int, length: int, fill: int) -> int:
        """kvm_gmem_fault_user_mapping() for each page touched: SIGBUS at or past i_size and
        on a private page (no GUEST_MEMFD_FLAG_INIT_SHARED); the bytes before the fault are
        written (to the memfd behind the mapping, which is never touched past its end)."""
        place = self.mapped(addr)
        if place is None:
            return self.kernel.touch(addr, length, fill)
        gmem, offset = place
        shared = bool(gmem.flags & self.facts.constants.get("GUEST_MEMFD_FLAG_INIT_SHARED", 0))
        stop = offset + length
        if not shared and not self.dev.skips("touch.private", "guest_memfd"):
            stop = offset
        if not self.dev.skips("touch.eof", "guest_memfd"):
            stop = min(stop, max(offset, gmem.size))
        done = min(stop, gmem.size) - offset
        if done > 0 and fill >= 0:
            self.memory.write(addr, bytes([fill]) * done)
        return SIGBUS if stop < offset + length else 0

    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int:
        """vfs_fallocate() then kvm_gmem_fallocate(), in their order."""
        gmem = self.gmem(fd)
        if gmem is None:
            return self.kernel.fallocate(fd, mode, offset, length)
        mode &= 0xFFFFFFFF
        keep, punch = mode & FALLOC_FL_KEEP_SIZE, mode & FALLOC_FL_PUNCH_HOLE
        g = "guest_memfd"
        try:
            self.check("fallocate.range", offset < 0 or length <= 0, g)
            vfs_mode = bool(mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) or not _one_mode(mode & FALLOC_FL_MODE_MASK, keep)
            self.check("fallocate.vfs-mode", vfs_mode, g, errno.EOPNOTSUPP)
            self.check("fallocate.overflow", offset + length > S64_MAX, g, errno.EFBIG)
            self.check("fallocate.keep-size", not keep, g, errno.EOPNOTSUPP)
            self.check("fallocate.mode", bool(mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)), g, errno.EOPNOTSUPP)
            self.check("fallocate.align", offset % PAGE_SIZE != 0 or length % PAGE_SIZE != 0, g)
            if not punch:
                self.check("fallocate.eof", offset + length > gmem.size, g)
        except Refused as r:
            return -r.errno
        if punch:
            gmem.punch(offset, length)
        return 0


def _one_mode(exclusive: int, keep: int) -> bool:
    """vfs_fallocate()'s switch: one exclusive mode at most, PUNCH_HOLE only with
    KEEP_SIZE, COLLAPSE/INSERT/WRITE_ZEROES only without it."""
    if exclusive in (0, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE):
        return True
    if exclusive == FALLOC_FL_PUNCH_HOLE:
        return bool(keep)
    if exclusive in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        return not keep
    return False


def _is_open(fd: int) -> bool:
    """fget() of a u32 from a struct: an int fd, open in this process."""
    if fd >= 1 << 31:
        return False
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
