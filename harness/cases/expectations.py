"""Known findings per kernel: a TOML file per kernel, picked by `uname -r` or given.

Each finding lists case-id patterns (`*` is the only wildcard; brackets are literal, as
in `reserved[3]`) and the reason. Matching cases become strict xfails: a kernel that
fixes the finding turns them into failures, so the file gets updated.
"""

from __future__ import annotations

import errno
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from harness.errors import ExpectationsMalformed
from harness.paths import EXPECTATIONS_DIR
from harness.rules import KernelData


@dataclass(frozen=True)
class Finding:
    patterns: tuple[str, ...]
    reason: str

    def regexes(self) -> list[re.Pattern[str]]:
        return [re.compile("^" + ".*".join(re.escape(p) for p in pat.split("*")) + "$") for pat in self.patterns]


@dataclass(frozen=True)
class Expectations:
    """A kernel's known findings and the errnos on which released kernels differ."""

    path: str | None
    kernel: str
    findings: tuple[Finding, ...] = ()
    kernel_data: KernelData = field(default_factory=KernelData)
    release: str | None = None  # the `uname -r` pattern the file is picked by

    def finding_for(self, case_id: str) -> Finding | None:
        for f in self.findings:
            if any(r.match(case_id) for r in f.regexes()):
                return f
        return None


NONE = Expectations(None, "no expectations file")


# Every key an expectations file may have, per table; anything else is a typo, refused
# the same way everywhere (a misspelt [[finding]] would silently drop every finding).
TOP_KEYS = ("kernel", "finding", "kernel_data")
KERNEL_KEYS = ("name", "release")
FINDING_KEYS = ("cases", "reason")
KERNEL_DATA_KEYS = tuple(f.name for f in fields(KernelData))


def _only(path: Path, where: str, table: dict[str, object], known: tuple[str, ...]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ExpectationsMalformed(f"{path}: unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(unknown)} in {where}; "
                                    f"known: {', '.join(known)}")


def _errno(path: Path, key: str, value: object) -> int:
    if isinstance(value, str) and value in errno.__dict__ and value.startswith("E"):
        return int(getattr(errno, value))
    raise ExpectationsMalformed(f"{path}: [kernel_data] {key} = {value!r} is not an errno name such as \"EEXIST\"")


def _read(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ExpectationsMalformed(f"--expectations {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ExpectationsMalformed(f"{path}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}); "
                                    "TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ExpectationsMalformed(f"{path}: malformed TOML: {e}") from None
    except OSError as e:
        raise ExpectationsMalformed(f"{path}: cannot be read: {e.strerror}") from None


def load(path: Path) -> Expectations:
    """Parse one expectations file; any defect is one line naming the file and the key."""
    data = _read(path)
    _only(path, "the file (its tables)", data, TOP_KEYS)
    kernel = data.get("kernel", {})
    if not isinstance(kernel, dict) or not isinstance(kernel.get("name"), str):
        raise ExpectationsMalformed(f"{path}: needs a [kernel] table with name = \"...\"")
    _only(path, "[kernel]", kernel, KERNEL_KEYS)
    findings = []
    entries = data.get("finding", [])
    if not isinstance(entries, list) or not all(isinstance(f, dict) for f in entries):
        raise ExpectationsMalformed(f"{path}: findings are [[finding]] tables")
    for i, f in enumerate(entries):
        _only(path, f"[[finding]] #{i + 1}", f, FINDING_KEYS)
        cases, reason = f.get("cases"), f.get("reason")
        if not (isinstance(cases, list) and cases and all(isinstance(c, str) for c in cases)) or not isinstance(reason, str):
            raise ExpectationsMalformed(f"{path}: [[finding]] #{i + 1} needs cases = [\"pattern\", ...] and reason = \"...\"")
        findings.append(Finding(tuple(cases), reason))
    release = kernel.get("release")
    if release is not None:
        try:
            re.compile(str(release))
        except re.error as e:
            raise ExpectationsMalformed(f"{path}: [kernel] release = {release!r} is not a regular expression: {e}") from None
    kd = data.get("kernel_data", {})
    if not isinstance(kd, dict):
        raise ExpectationsMalformed(f"{path}: kernel_data must be a [kernel_data] table")
    _only(path, "[kernel_data]", kd, KERNEL_DATA_KEYS)
    kernel_data = KernelData(**{k: _errno(path, k, v) for k, v in kd.items()})
    return Expectations(str(path), str(kernel["name"]), tuple(findings), kernel_data, None if release is None else str(release))


def for_release(release: str, directory: Path = EXPECTATIONS_DIR) -> Expectations:
    """The file whose `release` pattern (a regex) matches `uname -r`, else none."""
    for path in sorted(directory.glob("*.toml")):
        exp = load(path)
        if exp.release is not None and re.search(exp.release, release):
            return exp
    return NONE
