"""The shared validators (taynode._validate): what they accept, and messages that name the problem."""

import math

import numpy as np
import pytest

from taynode import _validate as v


def test_integer_accepts_ints_and_numpy_ints_and_returns_int():
    assert v.integer("n", 3, 1) == 3
    out = v.integer("n", np.int64(4), 1)
    assert out == 4 and type(out) is int


@pytest.mark.parametrize("bad", [True, 2.0, "3", None, 0, -1])
def test_integer_rejects_bools_floats_and_values_below_the_bound(bad):
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got"):
        v.integer("n", bad, 1)


def test_integer_bounds_in_the_message():
    with pytest.raises(ValueError, match=r"b must be an integer in \[1, 10\], got 11"):
        v.integer("b", 11, 1, 10)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 7\), got 7"):
        v.integer("k", 7, 0, below=7)
    assert v.integer("k", 6, 0, below=7) == 6


def test_integers():
    assert v.integers("qs", [2, np.int32(3)], 2) == (2, 3)
    for bad in ([], [1], [2, True], 5):
        with pytest.raises(ValueError, match="qs must be integers >= 2"):
            v.integers("qs", bad, 2)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "x", None, True])
def test_positive_float_rejects(bad):
    with pytest.raises(ValueError, match="rtol must be a finite number > 0"):
        v.positive_float("rtol", bad)


def test_floats_accept_numpy_scalars():
    assert v.positive_float("x", np.float32(0.5)) == 0.5
    assert v.non_negative_float("x", 0) == 0.0
    with pytest.raises(ValueError, match="x must be a finite number >= 0"):
        v.non_negative_float("x", -1e-300)


def test_choice_lists_the_valid_names():
    assert v.choice("adjoint", "backprop", ("backprop", "adjoint")) == "backprop"
    with pytest.raises(ValueError, match="unknown adjoint 'typo'; valid: backprop, adjoint"):
        v.choice("adjoint", "typo", ("backprop", "adjoint"))
    with pytest.raises(ValueError, match="unknown solver 3"):
        v.choice("solver", 3, ("a",))
