"""One check of a value against its type hint (config keys and method parameters)."""

from typing import Literal

import pytest

from clcc.hints import conform, kind


@pytest.mark.parametrize("hint,value,expected", [
    (float, "1e-3", 0.001),  # YAML 1.1 reads 1e-3 as a string
    (float, 2, 2.0),
    (int, 3, 3),
    (bool, True, True),
    (str, "x", "x"),
    (Literal["sum", "mean"], "mean", "mean"),
    (list[int], [16, 32], [16, 32]),
    (list[float], [1, "1e-1"], [1.0, 0.1]),
    (list[int] | None, None, None),
    (int | None, 4, 4),
    (dict[str, int], {"a": 1}, {"a": 1}),
])
def test_values_that_fit_come_back_as_their_hint_takes_them(hint, value, expected):
    got = conform(hint, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("hint,value,named", [
    (int, True, "int"),  # YAML's true is an int to Python, not to a config
    (bool, 1, "bool"),
    (float, False, "float"),
    (float, "fast", "float"),
    (int, 2.5, "int"),
    (str, 3, "str"),
    (Literal["sum", "mean"], "avg", "one of sum|mean"),
    (list[int], 5, "a list of int"),
    (list[int], [16, "a"], "a list of int"),
    (int | None, "x", "int"),
    (dict[str, int], 3, "a mapping (key: value)"),
])
def test_values_that_do_not_fit_are_refused_naming_what_fits(hint, value, named):
    assert kind(hint) == named
    with pytest.raises(ValueError):
        conform(hint, value)
