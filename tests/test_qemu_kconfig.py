"""The minimal kernel config of tools/build-kernel: its fragment, and the check that
catches an option olddefconfig dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.qemu.kconfig import MINIMAL, Option, config_key, fragment, main, parse_config, unmet

SOURCES = sorted((Path.home() / ".cache" / "kvm-kernels" / "src").glob("linux-source-*"))


def test_fragment_reads_back_as_wanted() -> None:
    assert parse_config(fragment()) == {o.name: o.value for o in MINIMAL}


def test_each_option_once_with_a_reason() -> None:
    names = [o.name for o in MINIMAL]
    assert len(names) == len(set(names))
    assert all(o.why for o in MINIMAL)
    assert {"KVM", "KVM_AMD", "KVM_SW_PROTECTED_VM", "VIRTIO_CONSOLE", "DEVTMPFS"} <= set(names)


def test_parse_config_reads_unset_lines_and_keeps_the_last() -> None:
    text = "CONFIG_A=y\n# CONFIG_B is not set\n# a comment\nCONFIG_C=\"x y\"\nCONFIG_A=n\n"
    assert parse_config(text) == {"A": "n", "B": "n", "C": '"x y"'}


def test_unmet_names_what_olddefconfig_dropped() -> None:
    wanted = (Option("KVM", "y", ""), Option("KVM_SW_PROTECTED_VM", "y", ""), Option("BLOCK", "n", ""),
              Option("LOCALVERSION", '"-m"', ""))
    resolved = "CONFIG_KVM=y\n# CONFIG_KVM_SW_PROTECTED_VM is not set\nCONFIG_LOCALVERSION=\"\"\n"
    assert unmet(resolved, wanted) == [
        "CONFIG_KVM_SW_PROTECTED_VM: wanted y, got n",
        'CONFIG_LOCALVERSION: wanted "-m", got ""',
    ]
    assert unmet("", (Option("PROC_SYSCTL", "y", ""),)) == [
        "CONFIG_PROC_SYSCTL: wanted y, got n (absent: a dependency is missing)"]
    assert unmet(fragment()) == []


def test_key_follows_the_config() -> None:
    assert config_key() == config_key()
    assert re.fullmatch(r"[0-9a-f]{12}", config_key())
    assert config_key(MINIMAL[:-1]) != config_key()


def test_check_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(fragment())
    bad.write_text(fragment().replace("CONFIG_KVM_SW_PROTECTED_VM=y", "# CONFIG_KVM_SW_PROTECTED_VM is not set"))
    assert main(["check", str(good)]) == 0
    assert main(["check", str(bad)]) == 1
    assert "CONFIG_KVM_SW_PROTECTED_VM: wanted y, got n" in capsys.readouterr().err
    assert main(["nonsense"]) == 2


@pytest.mark.skipif(not SOURCES, reason="no kernel tree in ~/.cache/kvm-kernels/src (tools/build-kernel extracts one)")
def test_every_option_is_a_symbol_of_the_source() -> None:
    """A renamed symbol (7.3's SYSCTL was PROC_SYSCTL) would be dropped; the check would
    catch it only after a build had started, this catches it at once."""
    tree = SOURCES[-1]
    symbols = {m[1] for path in [*tree.glob("Kconfig*"), *tree.glob("*/**/Kconfig*")]
               for m in re.finditer(r"^\s*(?:menu)?config\s+(\w+)", path.read_text(errors="replace"), re.M)}
    assert [o.name for o in MINIMAL if o.name not in symbols] == []
