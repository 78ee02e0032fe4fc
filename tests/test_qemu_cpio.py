"""The newc writer against an independent reader of the format the kernel unpacks."""

from __future__ import annotations

import stat
from dataclasses import dataclass

import pytest

from harness.qemu.cpio import char_device, directory, regular_file, write_newc


@dataclass(frozen=True)
class Member:
    """One member as read back."""

    name: str
    mode: int
    data: bytes
    ino: int
    rdev: tuple[int, int]


def read_newc(blob: bytes) -> list[Member]:
    """Members of a newc archive, checking magic and 4-byte alignment on the way."""
    members: list[Member] = []
    at = 0
    while True:
        assert at % 4 == 0
        assert blob[at : at + 6] == b"070701"
        fields = [int(blob[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_at = at + 110
        name = blob[name_at : name_at + namesize - 1].decode()
        assert blob[name_at + namesize - 1] == 0
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        data = blob[data_at : data_at + filesize]
        at = data_at + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            assert at == len(blob)
            return members
        members.append(Member(name, fields[1], data, fields[0], (fields[9], fields[10])))


def test_members_round_trip_with_types_and_padding() -> None:
    blob = write_newc([
        directory("dev"),
        char_device("dev/console", 5, 1),
        regular_file("init", b"\x7fELF123", 0o755),
        regular_file("a/longer-name.txt", b"x" * 5),
    ])
    members = read_newc(blob)
    assert [m.name for m in members] == ["dev", "dev/console", "init", "a/longer-name.txt"]
    modes = [m.mode for m in members]
    assert stat.S_ISDIR(modes[0]) and stat.S_ISCHR(modes[1]) and stat.S_ISREG(modes[2])
    assert stat.S_IMODE(modes[2]) == 0o755
    assert members[1].rdev == (5, 1)
    assert members[2].data == b"\x7fELF123"
    assert len({m.ino for m in members}) == 4


def test_output_is_deterministic() -> None:
    entries = [directory("x"), regular_file("x/y", b"data")]
    assert write_newc(entries) == write_newc(entries)


def test_empty_archive_is_only_the_trailer() -> None:
    assert read_newc(write_newc([])) == []


@pytest.mark.parametrize("name", ["/init", ""])
def test_absolute_or_empty_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="relative"):
        write_newc([regular_file(name, b"")])
