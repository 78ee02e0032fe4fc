"""The console header's text: one fact a line, the same from the suite and from the
host that boots a guest (`kvmconf run --kernel`), which prints it before the boot.

Not a plugin, so that `kvmconf` can import it before pytest starts.
"""

from __future__ import annotations


def header_lines(kernel: str, runs: str, abi: str, profile: str, backend: str, expectations: str) -> list[str]:
    """The block, aligned so the eye finds each fact."""
    facts = (("kernel", kernel), ("runs on", runs), ("ABI", abi), ("profile", profile),
             ("backend", backend), ("expectations", expectations))
    return [f"{name + ':':<13} {value}" for name, value in facts]
