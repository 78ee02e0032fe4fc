"""The registry of backends that `--backend` can name."""

from __future__ import annotations

from harness.abi.facts import AbiFacts
from harness.backend import Backend, KernelBackend


def backend_names() -> list[str]:
    return ["kernel"]


def make_backend(name: str, facts: AbiFacts, mutant: str | None) -> Backend:
    if name == "kernel":
        return KernelBackend()
    raise ValueError(f"unknown backend {name}")
