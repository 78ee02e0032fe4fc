"""ABI facts read from a kernel's uapi `kvm.h`: gcc compiles a probe to assembly only.

The probe asks the compiler, not a parser: sizes, offsets, ioctl numbers, caps and
flag values come out exactly as userspace built against that header would see them,
read from the `.s` file gcc writes (the kernel's asm-offsets technique), so no code
of the header ever runs. The header is copied, prepared as headers_install does, to
a folder of its own that goes to gcc as an include path; its path is never part of
the C source. A symbol the header lacks is recorded as absent, never guessed.

Under `--kernel` the host probes once and gives the guest a probe record (a JSON file
in the run folder), so a header anywhere on the host works and the guest runs no gcc.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.abi.facts import AbiFacts
from harness.abi.header_facts import (
    GCC_DEFINES,
    INCLUDE_NAME,
    REQUIRED,
    ProfileMatch,
    RawProbe,
    asked_symbols,
    choose_profile,
    facts_from_probe,
    include_candidates,
    parse_assembly,
    prepare,
    program,
    struct_lines,
    symbol_lines,
)
from harness.abi.ioc import host_encoding
from harness.abi.profile import DEFAULT_PROFILE, catalogue, load_profile
from harness.errors import GccMissing, HeaderCompileError, HeaderIncomplete, HeaderMissing, HeaderUnreadable

CACHE_DIR = Path.home() / ".cache" / "kvmconf" / "headers"
RECORD_SUFFIX = ".json"  # a probe record, as the host writes it for the guest
RECORD_FORMAT = "kvmconf header probe 1"


def read_header(header: Path) -> bytes:
    """The header's bytes, or one line saying why they cannot be had."""
    if not header.exists():
        raise HeaderMissing(f"header {header}: no such file; give the kvm.h that `make headers_install` wrote")
    if not header.is_file():
        raise HeaderMissing(f"header {header}: not a regular file; give the path of a kvm.h")
    try:
        return header.read_bytes()
    except OSError as e:
        raise HeaderUnreadable(f"header {header}: cannot be read ({e.strerror}); check its permissions") from None


def _includes(header: Path) -> list[Path]:
    return [d for d in include_candidates(header.resolve()) if d.is_dir()]


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "error" in line:
            return line.strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else "gcc failed"


class _Gcc:
    """gcc in a scratch folder holding the prepared header: compiles, never links."""

    def __init__(self, work: Path, prepared: bytes, includes: list[Path]) -> None:
        self.work = work
        (work / "include" / INCLUDE_NAME).parent.mkdir(parents=True)
        (work / "include" / INCLUDE_NAME).write_bytes(prepared)
        self.flags = [*GCC_DEFINES, f"-I{work / 'include'}", *(f"-I{d}" for d in includes)]

    def compiles(self, body: list[str]) -> tuple[bool, str]:
        ok, err, _ = self._run(body, "-fsyntax-only")
        return ok, err

    def assembly(self, body: list[str]) -> tuple[bool, str, str]:
        return self._run(body, "-S")

    def _run(self, body: list[str], mode: str) -> tuple[bool, str, str]:
        source = self.work / "probe.c"
        source.write_text(program(body))
        out = self.work / "probe.s"
        done = subprocess.run(["gcc", mode, *self.flags, "-o", str(out), str(source)], capture_output=True,
                              cwd=self.work, check=False)
        err = done.stderr.decode(errors="replace")
        asm = out.read_bytes().decode(errors="replace") if done.returncode == 0 and mode == "-S" else ""
        return done.returncode == 0, err, asm


def probe(header: Path) -> RawProbe:
    """Raw probe output: {"syms": {name: value}, "structs": {name: {"size", "fields"}}}."""
    text = read_header(header)
    if shutil.which("gcc") is None:
        raise GccMissing("gcc not found: the header probe compiles against the header; install it with `apt-get install gcc`")
    cat = catalogue()
    with tempfile.TemporaryDirectory(prefix="kvmconf-probe-") as tmp:
        gcc = _Gcc(Path(tmp), prepare(text), _includes(header))
        ok, err = gcc.compiles([])
        if not ok:
            raise HeaderCompileError(f"header {header} does not compile: {_first_error(err)}")
        body = symbol_lines(asked_symbols())
        for sname, struct in cat.structs.items():
            lines = struct_lines(sname, struct.fields)
            if gcc.compiles(lines)[0]:
                body += lines
            elif gcc.compiles(lines[:1])[0]:  # keep the fields this revision of the struct has
                body += [lines[0], *(line for line in lines[1:] if gcc.compiles([line])[0])]
        ok, err, asm = gcc.assembly(body)
        if not ok:
            raise HeaderCompileError(f"header {header}: a value asked of it is not a constant: {_first_error(err)}")
    return parse_assembly(asm)


def cached_probe(header: Path) -> RawProbe:
    """`probe`, memoised on the header's bytes so xdist workers compile once per header."""
    text = read_header(header)
    # the key covers what is asked too: a profile adding a symbol must not read an old probe
    asked = "\n".join([*asked_symbols(), *(f"{s.name}.{f.name}" for s in catalogue().structs.values() for f in s.fields)])
    key = b"\0".join([text, str(header.resolve()).encode(), asked.encode(), program([]).encode(),
                      *(str(d).encode() for d in _includes(header))])
    path = CACHE_DIR / f"{hashlib.sha256(key).hexdigest()[:24]}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        result = probe(header)
        try:
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result))
            tmp.replace(path)
        except OSError:
            pass
        return result


def write_record(header: Path, to: Path) -> Path:
    """Probe `header` here and write what was found to `to`, for a process that cannot
    see the header (the guest): the facts travel, not the path."""
    to.write_text(json.dumps({"format": RECORD_FORMAT, "header": str(header.resolve()), **cached_probe(header)}))
    return to


def _probed(header: Path) -> tuple[str, RawProbe]:
    """The header's label and probe: probed here, or read from a probe record."""
    if header.suffix != RECORD_SUFFIX:
        return f"header {header}", cached_probe(header)
    try:
        record = json.loads(read_header(header))
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise HeaderIncomplete(f"{header} is not a header probe record kvmconf wrote; give a kvm.h")
    return f"header {record['header']}", {"syms": record["syms"], "structs": record["structs"]}


def profile_for(header: Path) -> ProfileMatch:
    """The profile the header matches (or the closest), for runs without --profile."""
    return choose_profile(_probed(header)[1])


def resolve_profile(given: str | None, header: str | None) -> tuple[str, str]:
    """The run's profile and why: --profile when given, else the header's match, else
    the default. An unknown --profile is named before gcc probes a header."""
    if given is not None:
        load_profile(given)
        return given, f"{given} (--profile)"
    if header is None:
        return DEFAULT_PROFILE, f"{DEFAULT_PROFILE} (the default: no --profile and no header)"
    match = profile_for(Path(header))
    return match.profile, match.reason


def facts_from_header(header: Path, profile: str) -> AbiFacts:
    """Facts with the header's numbers and layouts over the profile's semantics."""
    label, raw = _probed(header)
    syms = raw["syms"]
    assert isinstance(syms, dict)
    missing = [s for s in REQUIRED if s not in syms]
    if missing:
        raise HeaderIncomplete(f"{label} lacks {', '.join(missing)}: is it the uapi linux/kvm.h?")
    return facts_from_probe(raw, label, profile, host_encoding())
