"""Small `kvmconf run`s that the report tests share, made once per session.

Both run the same subset of the suites against this machine's /dev/kvm: passes, a skip
(an ioctl the released profile lacks), known findings (kvm_create_guest_memfd.reserved[]).
The *failing* run also gets an expectations file saying that binding an already-bound
guest_memfd range answers ENOSPC, which no kernel does, so that case fails with a rule,
an input, an expected and an actual answer; it runs under xdist (`-n 2`), so the model
has to travel from the workers. The *base* run uses the repository's expectations for
this kernel and one process. The *full* run is every case, as `kvmconf run` makes it
(the page a reviewer gets); the *model* run is the subset against the model backend,
in one process: machine-independent, so its files are compared with golden files.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.paths import ROOT
from tests.kvmdev import child_env

# the binding cases of the first landing: each kind of fd, and the range another slot binds
BINDINGS = "test_binding and not existing and not offset and not size and not userspace and not front and not back and not invalid"
SUBSET = f"({BINDINGS}) or test_fstat or (test_reserved_word and KVM_CREATE_GUEST_MEMFD) or test_number_encodes_struct"
BOUND_CASE = "suites/test_guest_memfd.py::test_binding[KVM_SET_USER_MEMORY_REGION2/vm0/binding=ok/bound=1]"
FINDING = "kvm_create_guest_memfd.reserved[] is never checked: non-zero reserved words are accepted"
FORCED_FAILURE = f"""\
[kernel]
name = "the report tests' kernel, with one wrong expectation"

[kernel_data]
range_bound_errno = "ENOSPC"

[[finding]]
cases = ["KVM_CREATE_GUEST_MEMFD/*/reserved[*"]
reason = "{FINDING}"
"""


def kvmconf(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    folder: Path


_runs: dict[str, Run] = {}


Kind = Literal["base", "failing", "full", "model"]


def report_run(kind: Kind, base: Path) -> Run:
    """The run of that kind, made on first use under `base` (the session's temp dir)."""
    if kind not in _runs:
        reports = base / f"reports-{kind}"
        args = ["run", "--reports", str(reports)] + ([] if kind == "full" else ["-k", SUBSET])
        if kind == "full":
            args += ["-n", "2"]
        elif kind == "model":
            args += ["--backend", "model", "-n", "0"]
        elif kind == "failing":
            expectations = base / "forced-failure.toml"
            expectations.write_text(FORCED_FAILURE)
            args += ["--expectations", str(expectations), "-n", "2"]
        else:
            args += ["-n", "0"]
        done = kvmconf(*args)
        latest = reports / "latest"
        assert latest.is_dir(), f"kvmconf {' '.join(args)} exited {done.returncode} with no run folder:\n{done.stdout}\n{done.stderr}"
        _runs[kind] = Run(done.returncode, done.stdout + done.stderr, latest.resolve())
    return _runs[kind]
