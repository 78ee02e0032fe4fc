"""What several test modules need to know about this machine's KVM device."""

from __future__ import annotations

import os

import pytest

DEVICE = "/dev/kvm"


def device_problem() -> str | None:
    """Why /dev/kvm cannot be used by this user, or None when it can."""
    try:
        os.close(os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"{DEVICE} cannot be opened read-write ({e.strerror}): these tests need KVM"
    return None


needs_kvm = pytest.mark.skipif(device_problem() is not None, reason=str(device_problem()))


def child_env() -> dict[str, str]:
    """This environment without pytest's own variables, so a child process is a plain run."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
