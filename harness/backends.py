"""The registry of backends that `--backend` can name."""

from __future__ import annotations

from harness.abi.facts import AbiFacts
from harness.backend import Backend, KernelBackend
from harness.model.backend import ModelBackend
from harness.model.mutants import MutantError, mutant


def backend_names() -> list[str]:
    return ["kernel", "model"]


def make_backend(name: str, facts: AbiFacts, mutant_name: str | None) -> Backend:
    """The backend `--backend` names; `--mutant` makes the model deviate (model only)."""
    if name == "model":
        if mutant_name is None:
            return ModelBackend(facts)
        return ModelBackend(facts, mutant(mutant_name).deviation, mutant_name)
    if mutant_name is not None:
        raise MutantError(f"--mutant {mutant_name} deviates the model: it needs --backend model")
    if name == "kernel":
        return KernelBackend()
    raise ValueError(f"unknown backend {name}")
