"""Property-based cases: hypothesis draws whole structs, the rules give the expected
answer, the backend (the model or a real kernel) answers, and the two must agree.

Every field can take any value of its width, biased toward the values where the rules
have edges (0, small numbers, page multiples and residues, single bits, wrap points).
An example starts from the surface's valid baseline with either a few fields drawn or
every field drawn (shrinking goes back toward the baseline, so a counterexample shows
the fewest deviations); reserved words are all zero, one drawn, or all drawn. The
`guest_memfd` word is an fd number, so it is not drawn: the kind of fd it names (this
VM's guest_memfd, a closed number, not a guest_memfd, another VM's) is drawn instead.

Deterministic by default (`harness.session.fuzzopt`); `--fuzz-examples N` fuzzes. A
failure ends with the shrunk example as a line to paste into a test.

On a real kernel the expectations file's known findings do not fail these cases:
reserved words the kernel is known not to check are drawn zero, and an example in
which one field alone is a known finding's case is not judged. Examples that would
make a real kernel allocate for a huge range (a memslot, or attributes, over more than
1 GiB) are not sent to it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from harness.abi.facts import Struct, Word
from harness.cases.case import Case
from harness.cases.expectations import NONE, Expectations
from harness.session.engine import record, run_ioctl_case, take_outcomes
from harness.session.fuzzopt import fuzz_settings
from harness.session.plugin import expectations_of
from harness.session.target import Target
from harness.surfaces import registry

# Weights by repetition; hypothesis shrinks toward the first entry. Input fields leaving
# the baseline: mostly one, sometimes up to three, or all; reserved words: mostly none
# drawn, one, or all. Setups (a memslot's bound fd) are the surface's `drawn_knobs`.
FIELDS_MIX = ("one", "one", "one", "some", "all")
RESERVED_MIX = ("none", "none", "none", "one", "all")


def edges(bits: int, page: int) -> list[st.SearchStrategy[int]]:
    """Values of a `bits`-wide word where the rules have edges, by kind, each kind as
    likely as the others: 0, small page multiples, small numbers and page residues,
    single bits, values where signed and unsigned arithmetic wraps."""
    top, half = 1 << bits, 1 << (bits - 1)
    kinds = [
        [0],
        [k * page for k in range(1, 6)],
        [*range(1, 16), page - 1, page + 1, page // 2 + 8],
        [1 << b for b in range(bits)],
        [half - page, half, half + page, top - page, top - 1],
    ]
    return [st.sampled_from([v for v in kind if 0 <= v < top]) for kind in kinds]


def word(w: Word, page: int) -> st.SearchStrategy[int]:
    """Any value of the word's width, mostly one at an edge."""
    bits = 8 * w.size
    return st.one_of(*edges(bits, page), st.integers(0, (1 << bits) - 1))


@st.composite
def struct_values(draw: st.DrawFn, struct: Struct, page: int, zero: frozenset[str], fd_words: frozenset[str]) -> dict[str, int]:
    """Drawn words of `struct` over its baseline: a few input fields or all of them,
    then no, one or every reserved word (except those in `zero`)."""
    fields = [w for w in struct.input_words() if w.label not in fd_words]
    reserved = [w for w in struct.reserved_words() if w.label not in zero]
    many = draw(st.sampled_from(FIELDS_MIX))
    if many == "all":
        chosen = fields
    else:
        size = 1 if many == "one" else 3
        chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=size, unique_by=lambda w: w.label))
    values = {w.label: draw(word(w, page)) for w in chosen}
    how = draw(st.sampled_from(RESERVED_MIX)) if reserved else "none"
    if how == "one":
        w = draw(st.sampled_from(reserved))
        values[w.label] = draw(word(w, page).filter(bool))
    elif how == "all":
        values.update({w.label: draw(word(w, page)) for w in reserved})
    order = [w.label for w in struct.words()]
    return dict(sorted(values.items(), key=lambda kv: order.index(kv[0])))


def covered(exp: Expectations, example: Case) -> bool:
    """One of the example's fields alone is a case the expectations file lists."""
    return any(exp.finding_for(replace(example, values=(pair,)).id) for pair in example.values)


def reproduction(c: Case) -> str:
    """The example as a line to paste into a test that has the `target` fixture."""
    values = "".join(f'("{k}", {v:#x}), ' for k, v in c.values)
    knobs = "".join(f'("{k}", {v!r}), ' for k, v in c.knobs)
    return f'verdict(target, run_ioctl_case(target, Case("property", "{c.surface}", "{c.fd}", {c.vm_type}, ({values}), knobs=({knobs}))))'


@pytest.mark.cases("property_targets")
def test_drawn_structs_agree_with_rules(target: Target, case: Case, pytestconfig: pytest.Config) -> None:
    """Drawn structs: the backend answers as the rules say, writes nothing outside the
    struct and leaves nothing behind when it refuses."""
    target.require_vm(case.vm_type)
    io = target.require_ioctl(case.surface, case.fd, case.vm_type)
    assert io.struct is not None
    struct = target.facts.structs[io.struct]
    surface = registry.surface(case.surface)
    knobs = list(surface.drawn_knobs)
    for need in {n for k in knobs for n in surface.requirements(replace(case, knobs=k))}:
        target.require(need, case.vm_type)
    exp = NONE if target.model else expectations_of(pytestconfig, target.kernel)
    zero = frozenset(w.label for w in struct.reserved_words() if exp.finding_for(replace(case, values=((w.label, 1),), tag="").id))

    @fuzz_settings(pytestconfig)
    @given(values=struct_values(struct, target.page, zero, surface.fd_words), knob=st.sampled_from(knobs))
    def agree(values: dict[str, int], knob: tuple[tuple[str, str], ...]) -> None:
        example = Case("property", case.surface, case.fd, case.vm_type, tuple(values.items()), knobs=knob)
        if not target.model:
            assume(not surface.heavy(dict(example.values), target.page))
            if covered(exp, example):
                return
        take_outcomes()  # only the example that fails last goes to the report
        outcome = run_ioctl_case(target, example)
        problem = outcome.problem()
        if problem:
            record(outcome)
            raise AssertionError(f"{problem}\n{outcome.explain()}\n  case:      {example.id}\n  reproduce: {reproduction(example)}")

    agree()
