"""Parsing the numbers of transport and store options, one way everywhere."""

from __future__ import annotations

from typing import Any

from .errors import InvalidOption


def number_option(options: dict[str, Any], name: str, default: float,
                  minimum: float, *, exclusive: bool = False) -> float:
    """``options[name]`` as a float of at least ``minimum`` (above it if ``exclusive``).

    Returns ``default`` when the option is absent or None.  Options often come
    from a URL's query string, so numeric strings are accepted.

    Raises:
        InvalidOption: the value is not a number or is out of range.
    """
    value = options.get(name)
    if value is None:
        return default
    try:
        number = float(value)
        valid = number > minimum if exclusive else number >= minimum
    except (TypeError, ValueError):
        valid = False
    if not valid:
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise InvalidOption(f"Option {name}={value!r} must be a number {bound}.")
    return number
