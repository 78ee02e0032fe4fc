"""ABI facts read from a kernel's uapi `kvm.h` by compiling a small C probe with gcc.

The probe asks the compiler, not a parser: sizes, offsets, ioctl numbers, caps and
flag values come out exactly as userspace built against that header would see them.
A symbol the header lacks is recorded as absent; nothing is filled in from a guess.
The semantics of each ioctl (which fd, which cap announces it) come from the profile.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from harness.abi.exits import MEMBER_PREFIX
from harness.abi.facts import TYPE_BY_SIZE, AbiFacts, Field, Ioctl, Struct
from harness.abi.ioc import host_encoding
from harness.abi.profile import catalogue, known_profiles, load_profile
from harness.errors import GccMissing, HeaderCompileError, HeaderIncomplete, HeaderMissing

REQUIRED = ("KVM_CREATE_VM", "KVM_CHECK_EXTENSION")
CACHE_DIR = Path.home() / ".cache" / "kvmconf" / "headers"

_PRELUDE = """#include <stdio.h>
#include <stddef.h>
#include "{header}"
#define SYM(x) printf("sym %s %llu\\n", #x, (unsigned long long)(x));
#define SIZE(s) printf("size %s %zu\\n", #s, sizeof(struct s));
#define FIELD(s, f) printf("field %s %s %zu %zu\\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f));
#define MSIZE(s, o, m) printf("size %s %zu\\n", #s, sizeof(((struct o *)0)->m));
#define MFIELD(s, o, m, f) printf("field %s %s %zu %zu\\n", #s, #f, offsetof(struct o, m.f) - offsetof(struct o, m), \\
                                  sizeof(((struct o *)0)->m.f));
int main(void) {{
"""


def _gcc(source: str, header: Path, workdir: Path, *, run: bool) -> subprocess.CompletedProcess[str]:
    c_file = workdir / "probe.c"
    c_file.write_text(source)
    exe = workdir / "probe"
    include_root = header.parent.parent if header.parent.name == "linux" else header.parent
    args = ["gcc", f"-I{include_root}", "-o", str(exe), str(c_file)]
    built = subprocess.run(args, capture_output=True, text=True)
    if built.returncode != 0 or not run:
        return built
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True)


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "error" in line:
            return line.strip()
    return stderr.strip().splitlines()[0] if stderr.strip() else "gcc failed"


def _program(header: Path, body: list[str]) -> str:
    return _PRELUDE.format(header=header) + "\n".join(body) + "\nreturn 0;\n}\n"


def _size_line(name: str) -> str:
    """sizeof the struct, or of the anonymous union member a `kvm_run_exit_*` layout is."""
    if name.startswith(MEMBER_PREFIX):
        return f"MSIZE({name}, kvm_run, {name.removeprefix(MEMBER_PREFIX)})"
    return f"SIZE({name})"


def _field_line(name: str, field: str) -> str:
    if name.startswith(MEMBER_PREFIX):
        return f"MFIELD({name}, kvm_run, {name.removeprefix(MEMBER_PREFIX)}, {field})"
    return f"FIELD({name}, {field})"


def _struct_lines(name: str, fields: tuple[Field, ...]) -> list[str]:
    return [_size_line(name), *(_field_line(name, f.name) for f in fields)]


def probe(header: Path) -> dict[str, object]:
    """Raw probe output: {"syms": {name: value}, "structs": {name: {"size", "fields"}}}."""
    if not header.is_file():
        raise HeaderMissing(f"--kvm-header {header}: no such file; give the kvm.h that `make headers_install` wrote")
    if shutil.which("gcc") is None:
        raise GccMissing("gcc not found: the header probe compiles against the header; install it with `apt-get install gcc`")
    header = header.resolve()
    cat = catalogue()
    symbols = sorted({*cat.ioctls, *cat.caps, *cat.constants, *_model_cap_names()})
    with tempfile.TemporaryDirectory(prefix="kvmconf-probe-") as tmp:
        work = Path(tmp)
        bare = _gcc(_program(header, []), header, work, run=False)
        if bare.returncode != 0:
            raise HeaderCompileError(f"--kvm-header {header} does not compile: {_first_error(bare.stderr)}")
        body = [f"#ifdef {s}\nSYM({s})\n#endif" for s in symbols]
        structs_ok: list[str] = []
        for sname, struct in cat.structs.items():
            lines = _struct_lines(sname, struct.fields)
            if _gcc(_program(header, lines), header, work, run=False).returncode == 0:
                body += lines
                structs_ok.append(sname)
                continue
            if _gcc(_program(header, [_size_line(sname)]), header, work, run=False).returncode != 0:
                continue  # the header has no such struct
            body.append(_size_line(sname))
            for f in struct.fields:  # keep the fields this revision of the struct has
                line = _field_line(sname, f.name)
                if _gcc(_program(header, [line]), header, work, run=False).returncode == 0:
                    body.append(line)
        out = _gcc(_program(header, body), header, work, run=True)
    syms: dict[str, int] = {}
    structs: dict[str, dict[str, object]] = {}
    for line in out.stdout.splitlines():
        kind, *rest = line.split()
        if kind == "sym":
            syms[rest[0]] = int(rest[1])
        elif kind == "size":
            structs.setdefault(rest[0], {"fields": []})["size"] = int(rest[1])
        elif kind == "field":
            fields = structs.setdefault(rest[0], {"fields": []})["fields"]
            assert isinstance(fields, list)
            fields.append([rest[1], int(rest[2]), int(rest[3])])
    return {"syms": syms, "structs": structs}


def _model_cap_names() -> set[str]:
    return {c for p in known_profiles() for c in load_profile(p).model_caps}


def cached_probe(header: Path) -> dict[str, object]:
    """`probe`, memoised on the header's bytes so xdist workers compile once per header."""
    if not header.is_file():
        return probe(header)
    # the key covers what is asked too: a profile adding a symbol must not read an old probe
    asked = "\n".join(sorted({*catalogue().ioctls, *catalogue().caps, *catalogue().constants, *_model_cap_names(),
                               *(f"{s.name}.{f.name}" for s in catalogue().structs.values() for f in s.fields)}))
    key = header.read_bytes() + str(header.resolve()).encode() + asked.encode() + _PRELUDE.encode()
    digest = hashlib.sha256(key).hexdigest()[:24]
    path = CACHE_DIR / f"{digest}.json"
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


def facts_from_header(header: Path, profile: str) -> AbiFacts:
    """Facts with the header's numbers and layouts over the profile's semantics."""
    raw = cached_probe(header)
    syms: dict[str, int] = dict(raw["syms"])  # type: ignore[call-overload]
    probed: dict[str, dict[str, object]] = dict(raw["structs"])  # type: ignore[call-overload]
    missing = [s for s in REQUIRED if s not in syms]
    if missing:
        raise HeaderIncomplete(f"--kvm-header {header} lacks {', '.join(missing)}: is it the uapi linux/kvm.h?")
    base = load_profile(profile)
    cat = catalogue()
    why = f"not defined in header {header}"
    structs: dict[str, Struct] = {}
    for sname, info in probed.items():
        known = base.structs.get(sname) or cat.structs[sname]
        fields = []
        for fname, offset, size in info["fields"]:  # type: ignore[attr-defined]
            k = known.field(fname)
            fields.append(Field(fname, k.type, offset, size // k.elem_size, k.role) if size % k.elem_size == 0
                          else Field(fname, TYPE_BY_SIZE.get(size, "u8"), offset, 1 if size in TYPE_BY_SIZE else size, k.role))
        structs[sname] = Struct(sname, int(info["size"]), tuple(fields))  # type: ignore[call-overload]
    ioctls: dict[str, Ioctl] = {}
    for iname, known_io in cat.ioctls.items():
        if iname not in syms:
            continue
        # the number is the header's; the direction and struct stay the spec's, so the
        # sizing checks compare the header's encoding against them
        ioctls[iname] = replace(base.ioctls.get(iname, known_io), number=syms[iname])
    caps = {c: syms[c] for c in {*cat.caps, *_model_cap_names()} if c in syms}
    constants = {c: syms[c] for c in cat.constants if c in syms}
    absent = {s: f"{s} is {why}" for s in [*cat.ioctls, *cat.caps, *cat.constants, *cat.structs]
              if s not in ioctls and s not in caps and s not in constants and s not in structs}
    return AbiFacts(
        source=f"header {header} (semantics: profile {profile})",
        profile=profile,
        encoding=host_encoding(),
        structs=structs,
        ioctls=ioctls,
        caps=caps,
        constants=constants,
        cap_mirrors={k: v for k, v in base.cap_mirrors.items() if k in caps and v in caps},
        model_caps={},
        absent=absent,
    )
