"""The size, dtype, device, count and kwarg parsers: what they accept and how they refuse."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from modelviz.core.specs import (
    DTYPE_ALIASES,
    InputSpec,
    parse_count,
    parse_device,
    parse_dtype,
    parse_kwarg,
    parse_size,
)
from modelviz.errors import SpecError

dims = st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6)
dtypes = st.sampled_from([*sorted(set(DTYPE_ALIASES.values())), None])


@given(dims=dims, dtype=dtypes)
def test_size_round_trips(dims: list[int], dtype: str | None) -> None:
    spec = InputSpec(tuple(dims), dtype)
    assert parse_size(str(spec)) == spec


@given(dims=dims, sep=st.sampled_from(["x", "X", "×", ",", "*"]))
def test_size_separators(dims: list[int], sep: str) -> None:
    assert parse_size(sep.join(map(str, dims))).dims == tuple(dims)


@given(text=st.text(max_size=20))
@example("²")
@example("int64:٣")
def test_size_parser_never_crashes(text: str) -> None:
    """Any string either parses to positive dims or raises SpecError quoting it."""
    try:
        spec = parse_size(text)
    except SpecError as exc:
        assert repr(text) in str(exc)
    else:
        assert spec.dims and all(d > 0 for d in spec.dims)


@pytest.mark.parametrize(("text", "dims", "dtype"), [
    ("3x224x224", (3, 224, 224), None),
    ("10", (10,), None),
    ("int64:128", (128,), "int64"),
    ("float16:3x32x32", (3, 32, 32), "float16"),
    ("fp16:3x32x32", (3, 32, 32), "float16"),
    ("bf16:8", (8,), "bfloat16"),
    (" long:4x4 ", (4, 4), "int64"),
])
def test_size_examples(text: str, dims: tuple[int, ...], dtype: str | None) -> None:
    assert parse_size(text) == InputSpec(dims, dtype)


@pytest.mark.parametrize("text", ["", "3x", "x3", "3x0x2", "-1x3", "3.5", "abc", "3x224x224x",
                                  "int64:", "3x²", "３x224"])
def test_bad_sizes_are_named(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_size(text)
    assert repr(text) in str(info.value)
    assert "e.g. 3x224x224" in str(info.value)


def test_bad_dtype_lists_choices() -> None:
    with pytest.raises(SpecError) as info:
        parse_size("int65:3")
    assert str(info.value) == ("bad size 'int65:3': unknown dtype 'int65'. Use one of: float32, "
                               "float16, bfloat16, int64, int32, bool.")
    with pytest.raises(SpecError, match="unknown dtype 'int64'"):
        parse_dtype("int64", allowed=("float32", "float16"))


@pytest.mark.parametrize(("text", "value"), [
    ("25M", 25_000_000), ("5G", 5_000_000_000), ("1.5e9", 1_500_000_000), ("7b", 7 * 10**9),
    ("138,357,544", 138_357_544), ("100_000", 100_000), ("2.5K", 2500), ("1T", 10**12),
])
def test_counts(text: str, value: int) -> None:
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["", "M", "25Q", "-3", "five"])
def test_bad_counts(text: str) -> None:
    with pytest.raises(SpecError, match="K, M, G or T"):
        parse_count(text, what="--max-params")


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:1", "mps", "meta", "CPU"])
def test_devices(text: str) -> None:
    assert parse_device(text) == text.lower()


def test_bad_device() -> None:
    with pytest.raises(SpecError, match="unknown device 'gpu'. Use auto, cpu, cuda"):
        parse_device("gpu")


@pytest.mark.parametrize(("text", "pair"), [
    ("num_classes=10", ("num_classes", 10)),
    ("dropout=0.5", ("dropout", 0.5)),
    ("sizes=(1, 2)", ("sizes", (1, 2))),
    ("act=relu", ("act", "relu")),
    ("flag=True", ("flag", True)),
    ("name='x=y'", ("name", "x=y")),
])
def test_kwargs(text: str, pair: tuple[str, object]) -> None:
    assert parse_kwarg(text) == pair


@pytest.mark.parametrize("text", ["num_classes", "=3", "1x=3"])
def test_bad_kwargs(text: str) -> None:
    with pytest.raises(SpecError, match="Write key=value"):
        parse_kwarg(text)
