"""The registry of backends that `--backend` can name."""

from __future__ import annotations

from harness.abi.facts import AbiFacts
from harness.host.backend import Backend, KernelBackend
from harness.model.backend import ModelBackend
from harness.model.mutants import Mutant, MutantError, mutant
from harness.remote.connect import from_environment

# One request batch. Longer than a case's own limit (--case-timeout), which reports a hang
# as it does for every backend; this one covers the calls made outside cases.
REMOTE_TIMEOUT_S = 60.0


def backend_names() -> list[str]:
    return ["kernel", "model", "remote"]


def check_mutant(backend: str, name: str) -> Mutant:
    """The mutant `--mutant` names; it deviates the model, so it needs `--backend model`."""
    if backend != "model":
        raise MutantError(f"--mutant {name} deviates the model: it needs --backend model")
    return mutant(name)


def make_backend(name: str, facts: AbiFacts, mutant_name: str | None) -> Backend:
    """The backend `--backend` names; `--mutant` makes the model deviate (model only)."""
    if mutant_name is not None:
        return ModelBackend(facts, check_mutant(name, mutant_name).deviation, mutant_name)
    if name == "model":
        return ModelBackend(facts)
    if name == "kernel":
        return KernelBackend()
    if name == "remote":  # the executor KVMCONF_EXECUTOR names (harness.remote.connect)
        return from_environment(timeout_s=REMOTE_TIMEOUT_S)
    raise ValueError(f"unknown backend {name}")
