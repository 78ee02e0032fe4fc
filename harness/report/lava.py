"""What a finished run reports to LAVA: the commands, as pure data (`harness.cli.lava`
runs them on the device; lava/kvmconf.yaml calls it).

`lava-test-case NAME --result pass|fail|skip` for every case, inside one
`lava-test-set` per area, and one `kvmconf-run` case for the run.

LAVA knows pass, fail, skip and unknown. A known finding (strict xfail) is reported
`pass`, as kselftest's `ok ... # XFAIL` does not fail a run; its finding is printed to
the log just before. A known finding that no longer reproduces (strict xpass) and an
error are `fail`. Case names are the model's slugs: unique, no whitespace, only
[A-Za-z0-9_-].
"""

from __future__ import annotations

from collections.abc import Iterator

from harness.report.model import CaseResult, Result, by_area, slugify

RESULT: dict[Result, str] = {"pass": "pass", "xfail": "pass", "skip": "skip", "fail": "fail", "error": "fail", "xpass": "fail"}
RUN_CASE = "kvmconf-run"


def commands(cases: tuple[CaseResult, ...]) -> Iterator[tuple[str, list[str]]]:
    """(a line for the log, the command) for every case, grouped by area."""
    for area, group in by_area(cases).items():
        yield "", ["lava-test-set", "start", slugify(area)]
        for case in group:
            note = {"xfail": f"known finding: {case.reason}", "skip": f"skipped: {case.reason}",
                    "fail": case.reason, "error": case.reason, "xpass": f"known finding not seen: {case.reason}"}.get(case.result, "")
            line = f"{case.name}: {case.label}" + (f" ({note})" if note else "")
            yield line, ["lava-test-case", case.slug, "--result", RESULT[case.result]]
        yield "", ["lava-test-set", "stop"]
