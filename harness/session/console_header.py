"""The console header: one short block, before the first case, saying what is tested.

The kernel release, how it runs (this machine, or QEMU and its accelerator), where the
ABI facts come from and which profile (and why), the backend and the expectations
file. `kvmconf run --kernel` prints the same block on the host (`header_block`).
"""

from __future__ import annotations

import pytest

from harness.session.header_block import header_lines
from harness.session.plugin import expectations_of, target_of


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("kvmconf").addoption(
        "--profile-reason", default=None, metavar="TEXT",
        help="why the profile was chosen, for the console header and the report (kvmconf run fills it in)")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or not config.getoption("kvmconf_run_dir"):
        return  # a collection check without a console, an xdist worker, or not a `kvmconf run`
    target = target_of(config)
    exp = expectations_of(config, target.kernel)
    abi = target.facts.source.split(" (semantics:", 1)[0]
    profile = config.getoption("profile_reason") or target.facts.profile
    for line in header_lines(target.kernel, target.how, abi, profile, target.backend.name, exp.path or "none"):
        reporter.write_line(line)
