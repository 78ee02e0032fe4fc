"""The pytest plugin: options, the session's target, case tables and known findings.

The caps are probed once, in the xdist controller (or the only process), and handed
to every worker, so all workers parametrize from the same answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.abi.profile import DEFAULT_PROFILE
from harness.cases import tables
from harness.cases.captable import CapTable
from harness.cases.expectations import NONE, Expectations, for_release, load
from harness.errors import ExpectationsUnknownCases, KvmconfError, SurfaceMissing
from harness.host.device import check_device
from harness.paths import SUITES
from harness.session.backends import backend_names, make_backend
from harness.session.target import Target, load_facts, make_target
from harness.surfaces import registry

TARGET_KEY = pytest.StashKey[Target]()
EXPECT_KEY = pytest.StashKey[Expectations]()
pytest_plugins = [
    "harness.session.report_plugin",  # the run's model and report folder (--kvmconf-run-dir)
    "harness.session.progress",  # N/M cases on a QEMU guest's console
    "harness.session.console_header",  # the block before the first case: kernel, how it runs, ABI, profile, backend, expectations
]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kvmconf", "KVM uAPI conformance")
    g.addoption("--kvm-device", default="/dev/kvm", help="KVM device node to test (default: /dev/kvm)")
    g.addoption("--profile", default=DEFAULT_PROFILE, help="uAPI revision whose ABI facts and rules apply (default: released)")
    g.addoption("--kvm-header", default=None, help="a kernel's uapi linux/kvm.h; its numbers and layouts override the profile's")
    g.addoption("--expectations", default=None, help="known findings (TOML); default: the file matching uname -r")
    g.addoption("--backend", default="kernel", choices=backend_names(), help="what answers the calls (default: kernel)")
    g.addoption("--mutant", default=None, help="model backend only: run against this deliberate deviation")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cases(name): parametrize `case` from harness.cases.tables.<name>, from the ABI facts and caps")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "kvmconf-xdist")


class _XdistHooks:
    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["kvmconf_caps"] = json.dumps(target_of(node.config).caps.to_json())


def _abort(err: KvmconfError) -> None:
    pytest.exit(str(err), returncode=err.exit_code)


def how_it_ran() -> str:
    guest = os.environ.get("KVMCONF_GUEST")
    return f"QEMU ({guest})" if guest else "this machine"


def target_of(config: pytest.Config) -> Target:
    """The session's target, built on first use (collection needs its caps)."""
    if TARGET_KEY in config.stash:
        return config.stash[TARGET_KEY]
    opt = config.getoption
    try:
        facts = load_facts(opt("profile"), opt("kvm_header"))
        backend = make_backend(opt("backend"), facts, opt("mutant"))
        # the model names itself (model-rfc-v4); a kernel is `uname -r`, the guest's under QEMU
        release = str(getattr(backend, "release", os.uname().release))
        exp = expectations_of(config, release)
        worker = getattr(config, "workerinput", None)
        caps = None
        if worker is not None and "kvmconf_caps" in worker:
            caps = CapTable.from_json(json.loads(worker["kvmconf_caps"]))
        elif backend.name == "kernel":
            check_device(opt("kvm_device"))
        target = make_target(backend, facts, opt("kvm_device"), how_it_ran(), release, caps, exp.kernel_data)
        registry.check_covered(target.plan.catalogue)
    except registry.SurfaceMissing as e:
        _abort(SurfaceMissing(str(e)))
        raise
    except KvmconfError as e:
        _abort(e)
        raise
    config.stash[TARGET_KEY] = target
    return target


def expectations_of(config: pytest.Config, release: str) -> Expectations:
    if EXPECT_KEY not in config.stash:
        path = config.getoption("expectations")
        own = for_release(release) if config.getoption("backend") == "kernel" else NONE
        if path == "none":
            # no known findings, but the kernel's own answers where released kernels differ
            exp = replace(NONE, kernel_data=own.kernel_data)
        elif path:
            exp = load(Path(path))
        else:
            exp = own
        config.stash[EXPECT_KEY] = exp
    return config.stash[EXPECT_KEY]


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Iterator[Target]:
    t = target_of(pytestconfig)
    yield t
    t.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("cases")
    if marker is None:
        return
    table = tables.table(marker.args[0])
    cases = table(target_of(metafunc.config).plan)
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Known findings become strict xfails; a finding that names no case is an error."""
    if not any(item.get_closest_marker("cases") for item in items):
        return
    exp = expectations_of(config, target_of(config).kernel)
    matched: set[int] = set()
    for item in items:
        callspec = getattr(item, "callspec", None)
        finding = exp.finding_for(callspec.id) if callspec is not None else None
        if finding is not None:
            matched.add(exp.findings.index(finding))
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"known finding: {finding.reason}"))
    suites = {Path(p).name for p in SUITES.glob("test_*.py")}
    collected = {Path(str(item.fspath)).name for item in items}
    if suites <= collected:
        unknown = [p for i, f in enumerate(exp.findings) if i not in matched for p in f.patterns]
        if unknown:
            _abort(ExpectationsUnknownCases(f"{exp.path}: findings name cases that do not exist: {', '.join(unknown)}"))
