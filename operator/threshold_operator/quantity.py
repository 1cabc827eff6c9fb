"""Kubernetes resource quantities ("500m", "2Gi", "1e3"), as exact numbers: the node-pool
catalog is checked with them when the operator starts (requests never above limits), so that
no Job it builds is refused for its resources later."""

from __future__ import annotations

import re
from fractions import Fraction

_QUANTITY = re.compile(r"([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def parse_quantity(text: str | int | float) -> Fraction:
    """The exact value of a quantity (resource.ParseQuantity's grammar); ValueError otherwise."""
    match = None if isinstance(text, bool) else _QUANTITY.fullmatch(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a quantity, e.g. 500m, 2, 4Gi")
    sign, number, suffix = match.group(1), Fraction(match.group(2)), match.group(3) or ""
    if suffix in _BINARY:
        value = number * 1024 ** (_BINARY.index(suffix) + 1)
    elif suffix[:1] in ("e", "E"):
        value = number * Fraction(10) ** int(suffix[1:])
    else:
        value = number * Fraction(10) ** _DECIMAL[suffix]
    return -value if sign == "-" else value
