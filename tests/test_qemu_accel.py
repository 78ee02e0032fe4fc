"""Accel choice from what sysfs says about nesting."""

from __future__ import annotations

import pytest

from harness.qemu.accel import NESTED_PARAMS, choose_accel, parse_accel

INTEL, AMD = NESTED_PARAMS


@pytest.mark.parametrize(
    ("nested", "usable", "expected"),
    [
        ({INTEL: "Y\n"}, True, "kvm"),
        ({AMD: "1\n"}, True, "kvm"),
        ({AMD: "0\n"}, True, "tcg"),
        ({INTEL: "N\n"}, True, "tcg"),
        ({INTEL: "Y\n"}, False, "tcg"),  # nesting allowed but /dev/kvm not openable
        ({}, True, "tcg"),  # e.g. kvm_pvm: /dev/kvm without a vendor module
    ],
)
def test_choose_accel(nested: dict[str, str], usable: bool, expected: str) -> None:
    assert choose_accel(nested, usable) == expected


def test_parse_accel_accepts_only_known_names() -> None:
    assert parse_accel("kvm") == "kvm"
    assert parse_accel("tcg") == "tcg"
    with pytest.raises(ValueError, match="kvm' or 'tcg"):
        parse_accel("hvf")
