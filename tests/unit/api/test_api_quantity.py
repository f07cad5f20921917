from decimal import Decimal

import pytest

from llm_operator.api.quantity import parse_parameter_count, parse_quantity, quantity_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80Gi", Decimal(80 * 2**30)),
        ("64Mi", Decimal(64 * 2**20)),
        ("1.5Ti", Decimal(3 * 2**39)),
        ("500m", Decimal("0.5")),
        ("8", Decimal(8)),
        (8, Decimal(8)),
        ("1k", Decimal(1000)),
        ("2G", Decimal(2_000_000_000)),
        ("1e3", Decimal(1000)),
        ("2.5E-1", Decimal("0.25")),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_quantity(text: str | int, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["64 GB", "64GB", "Gi", "-1Gi", "1.2.3", "", "1Gib", True, 1.5])
def test_parse_quantity_rejects_what_kubernetes_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)  # type: ignore[arg-type]


def test_quantity_bytes_rounds_up() -> None:
    assert quantity_bytes("80Gi") == 85_899_345_920
    assert quantity_bytes("1500m") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("109B", 109e9), ("8B", 8e9), ("1.5B", 1.5e9), ("500M", 500e6), ("7b", 7e9), ("1T", 1e12), ("7000", 7000.0)],
)
def test_parse_parameter_count(text: str, expected: float) -> None:
    assert parse_parameter_count(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["lots", "8 B", "B", "8BB", "-8B", "1.5G"])
def test_parse_parameter_count_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_parameter_count(text)
