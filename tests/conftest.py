"""Fixtures several test modules share: the small report runs, made once per session."""

from __future__ import annotations

import pytest

from tests.kvmdev import device_problem
from tests.reportrun import Kind, Run, report_run


def _report_run(kind: Kind, tmp_path_factory: pytest.TempPathFactory) -> Run:
    problem = device_problem() if kind != "model" else None
    if problem:
        pytest.skip(problem)
    return report_run(kind, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def failing_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run with a forced failure and known findings, under xdist."""
    return _report_run("failing", tmp_path_factory)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run with this kernel's own expectations, in one process."""
    return _report_run("base", tmp_path_factory)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every case against this machine's kernel, as `kvmconf run` makes it."""
    return _report_run("full", tmp_path_factory)


@pytest.fixture(scope="session")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The subset against the model: the same files on every machine."""
    return _report_run("model", tmp_path_factory)
