"""How `run --kernel` chooses its mode and what it runs on the host against the executor."""

from __future__ import annotations

from pathlib import Path

from harness.cli.main import build_parser
from harness.cli.vmrun import host_argv
from harness.paths import ROOT
from tests.test_qemu_kernel import fake_bzimage


def test_host_run_is_the_guests_with_the_remote_backend_in_one_process(tmp_path: Path) -> None:
    """One process (the executor serves one channel), and the expectations of the kernel's
    release, which the plugin would pick by itself only for the kernel backend."""
    (tmp_path / "bzImage").write_bytes(fake_bzimage("7.3.4+deb13-amd64 (x@y) #1"))
    args = build_parser().parse_args(["run", "--kernel", str(tmp_path), "--guest-workers", "2", "-k", "caps"])
    args.kvm_header, args.profile_reason = None, "the default"
    argv = host_argv(args, tmp_path / "out", "tcg", {}, "7.3.4+deb13-amd64")
    assert argv[1:4] == ["-m", "harness.cli", "run"]
    assert "--backend=remote" in argv and "--workers=0" in argv and "--workers=2" not in argv
    assert f"--expectations={ROOT / 'expectations' / '7.3-debian.toml'}" in argv
    assert argv[argv.index("-k"):argv.index("-k") + 2] == ["-k", "caps"]
    args.expectations = "none"
    argv = host_argv(args, tmp_path / "out", "tcg", {}, "7.3.4+deb13-amd64")
    assert [a for a in argv if a.startswith("--expectations")] == ["--expectations=none"]
