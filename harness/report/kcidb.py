"""kcidb.json: the run as KernelCI KCIDB objects (schema v5.3 of the kcidb-io package).

One checkout and one build stand for the kernel under test. kvmconf tests a kernel it
did not build: the release, and what `--tree-name`, `--git-url`, `--git-commit` and
`--kernel-config` say, are all it knows of the source. Their ids are derived from
those, so every run of the same kernel reports to the same checkout and build; the
build's status is PASS (it booted and answered). A run against the model tests no
kernel: its kcidb.json holds no objects at all, rather than a "build" of the model.
Nothing names a folder of the host that ran it. Each case is a test with the path
`kvmconf.<area>.<case>`. Statuses:

- pass → PASS, fail → FAIL, error → ERROR, skip → SKIP;
- a known finding (strict xfail) → FAIL, since the kernel does break the rule, plus an
  *issue* per finding and an *incident* (present) linking each such test to it: KCIDB's
  own way of marking a failure as known;
- a known finding that no longer reproduces (strict xpass) → PASS, with an incident
  saying the issue is absent.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from harness.report.model import CaseResult, Result, RunInfo, RunModel, slugify

ORIGIN = "kvmconf"
VERSION = {"major": 5, "minor": 3}
STATUS: dict[Result, str] = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "skip": "SKIP", "xfail": "FAIL", "xpass": "PASS"}
LOG_EXCERPT_MAX = 16384  # the schema's maxLength


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def issue_id(reason: str) -> str:
    """Stable across runs, so dashboards see the same finding on every kernel that has it."""
    return f"{ORIGIN}:finding-{hashlib.sha256(reason.encode()).hexdigest()[:16]}"


def excerpt(case: CaseResult) -> str:
    """What went wrong, as the HTML and the console say it."""
    parts = [f"{c.what}\n  rule:     {c.rule}: {c.clause}\n  input:    {c.input}\n  expected: {c.expected}\n  actual:   {c.actual}"
             for c in case.wrong_calls]
    text = "\n".join(parts) if parts else case.message
    return no_host_paths(text)[:LOG_EXCERPT_MAX]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def no_host_paths(text: str) -> str:
    """Absolute paths cut to their last part: "header /home/x/linux/kvm.h (...)" → "header kvm.h (...)"."""
    return re.sub(r"(?<![\w.])/(?:[^\s/()]+/)*([^\s/()]+)", r"\1", text)


def _checkout(info: RunInfo) -> dict[str, Any]:
    co = info.checkout
    out: dict[str, Any] = {"id": f"{ORIGIN}:checkout-{_digest(info.kernel, co.tree_name, co.git_url, co.git_commit)}",
                           "origin": ORIGIN, "comment": f"Linux {info.kernel}", "misc": {"kernel_release": info.kernel}}
    if co.tree_name:
        out["tree_name"] = co.tree_name
    if co.git_url:
        out["git_repository_url"] = co.git_url
    if re.fullmatch(r"[0-9a-f]{40}", co.git_commit):
        out["git_commit_hash"] = co.git_commit
    elif co.git_commit:
        out["misc"]["git_commit"] = co.git_commit  # not a full hash: KCIDB's field takes only those
    return out


def _build(info: RunInfo, checkout_id: str) -> dict[str, Any]:
    arch = re.sub(r"[^a-z0-9_]", "_", info.arch.lower())
    out: dict[str, Any] = {"id": f"{ORIGIN}:build-{_digest(checkout_id, arch, info.checkout.config)}", "checkout_id": checkout_id,
                           "origin": ORIGIN, "architecture": arch, "status": "PASS",
                           "comment": f"the kernel under test, {info.kernel}", "misc": {"kernel_release": info.kernel}}
    if info.checkout.config:
        out["config_name"] = no_host_paths(info.checkout.config)
    return out


def render(model: RunModel) -> dict[str, Any]:
    info = model.info
    if info.model:
        return {"version": VERSION}
    checkout = _checkout(info)
    build = _build(info, checkout["id"])
    build_id = build["id"]
    environment = {"comment": info.how, "misc": {"abi_source": no_host_paths(info.abi_source), "profile": info.profile,
                                                 "backend": info.backend}}
    tests: list[dict[str, Any]] = []
    issues: dict[str, dict[str, Any]] = {}
    incidents: list[dict[str, Any]] = []
    for case in model.cases:
        test_id = f"{ORIGIN}:{info.run_id}:{case.slug}"
        test: dict[str, Any] = {
            "id": test_id, "build_id": build_id, "origin": ORIGIN,
            "path": f"{ORIGIN}.{slugify(case.area)}.{case.slug}",
            "comment": case.name, "status": STATUS[case.result], "start_time": _time(info.started),
            "duration": case.duration, "environment": environment,
            "misc": {"nodeid": case.nodeid, "case": case.case, "result": case.result, "reason": no_host_paths(case.reason)},
        }
        if case.result in ("fail", "error", "xfail", "xpass"):
            text = excerpt(case)
            if text:
                test["log_excerpt"] = text
        tests.append(test)
        if case.result in ("xfail", "xpass"):
            iid = issue_id(case.reason)
            issues.setdefault(iid, {"id": iid, "version": 1, "origin": ORIGIN, "comment": case.reason,
                                    "culprit": {"code": True}, "misc": {"expectations": no_host_paths(info.expectations)}})
            incidents.append({"id": f"{test_id}:finding", "origin": ORIGIN, "issue_id": iid, "issue_version": 1,
                              "test_id": test_id, "present": case.result == "xfail"})
    return {
        "version": VERSION,
        "checkouts": [checkout],
        "builds": [build],
        "tests": tests,
        "issues": list(issues.values()),
        "incidents": incidents,
    }
