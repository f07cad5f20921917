"""Kubernetes quantities (`64Gi`, `500m`) and model parameter counts (`109B`, `1.5B`, `500M`).

Each has a regular expression, used by both the pydantic models and the CRD's `pattern`,
and a parser that turns it into a number for the fit check.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, Any

from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

# Kubernetes' own quantity grammar (resource.Quantity) without the sign: a negative memory
# or GPU size is never meaningful here.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
PARAMETER_COUNT_PATTERN = r"^[0-9]+(\.[0-9]+)?[KMBTkmbt]?$"

_QUANTITY_RE = re.compile(QUANTITY_PATTERN)
_PARAMETER_COUNT_RE = re.compile(PARAMETER_COUNT_PATTERN)

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_PARAMETER_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}

# Kubernetes' Quantity holds at most 2^63-1 (about 9.2e18) of a unit; an exponent beyond this bound is no size
# anything here has, and computing it (1e400000) would hold the interpreter for minutes.
MAX_EXPONENT = 30

_NUMBER_RE = re.compile(r"^(?P<number>([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(?P<suffix>.*)$")


def parse_quantity(value: str | int) -> Decimal:
    """The exact value of a Kubernetes quantity: `64Gi` -> 68719476736, `500m` -> 0.5, `1e3` -> 1000."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if not _QUANTITY_RE.match(value):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    match = _NUMBER_RE.match(value)
    assert match is not None  # the quantity pattern starts with the same number grammar
    number, suffix = Decimal(match["number"]), match["suffix"]
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return number * _DECIMAL_SUFFIXES[suffix]
    exponent = int(suffix[1:])  # exponent form: 1e3, 2E-2
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"quantity {value!r} is out of range: its exponent is beyond ±{MAX_EXPONENT}")
    return number * Decimal(10) ** exponent


def quantity_bytes(value: str | int) -> int:
    """A memory or storage quantity in bytes, rounded up as Kubernetes does (`Quantity.Value()`)."""
    return int(parse_quantity(value).to_integral_value(rounding=ROUND_CEILING))


def parse_parameter_count(value: str) -> float:
    """A model's parameter count: `109B` -> 1.09e11, `1.5B` -> 1.5e9, `500M` -> 5e8, `7000` -> 7000."""
    if not isinstance(value, str) or not _PARAMETER_COUNT_RE.match(value):
        raise ValueError(f"not a parameter count: {value!r}")
    suffix = value[-1].upper() if value[-1].isalpha() else ""
    number = value[:-1] if suffix else value
    return float(number) * _PARAMETER_SUFFIXES[suffix]


def _validate_quantity(value: Any) -> str | int:
    # Kubernetes accepts an integer or a string here (x-kubernetes-int-or-string), nothing else.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "quantity_type", "must be of type integer or string (a Kubernetes quantity such as 64Gi or 8)"
        )
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise PydanticCustomError(
            "quantity_format",
            "should match '{pattern}': a Kubernetes quantity such as 500m, 8, 64Gi or 1.5T",
            {"pattern": QUANTITY_PATTERN},
        )
    exponent = _NUMBER_RE.match(value)["suffix"][1:] if isinstance(value, str) else ""
    if exponent and exponent.lstrip("+-").isdigit() and abs(int(exponent)) > MAX_EXPONENT:
        raise PydanticCustomError(
            "quantity_range",
            "{value} is out of range: an exponent beyond ±{limit} is no size Kubernetes can hold; write it "
            "with a suffix such as 80Gi",
            {"value": value, "limit": MAX_EXPONENT},
        )
    return value


Quantity = Annotated[
    str | int,
    PlainValidator(_validate_quantity),
    WithJsonSchema(
        # The structural form Kubernetes uses for resource.Quantity: int or string, pattern on strings.
        {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}
    ),
]
"""A Kubernetes quantity (`64Gi`, `500m`, `8`), kept as written; parse with `parse_quantity`."""
