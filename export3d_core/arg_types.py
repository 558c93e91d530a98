"""argparse types for numbers: a NaN, an infinity or a value outside its range is refused while
the command line is parsed (one line, exit 2), before any model is loaded or any frame rendered.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def finite_float(text: str) -> float:
    """Any finite float (no nan, no inf)."""
    return float(_number(text, float))


def bounded(kind: type, low: float | None = None, high: float | None = None) -> Callable[[str], float | int]:
    """A type accepting `kind` values in [low, high] (either end open when None)."""

    def parse(text: str):
        value = _number(text, kind)
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is above the maximum {high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    return int(bounded(int, 1)(text))


def non_negative_int(text: str) -> int:
    return int(bounded(int, 0)(text))
