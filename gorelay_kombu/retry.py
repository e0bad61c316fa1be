"""Retry policies: how long to wait before each retry of a failed task.

A policy answers two questions, and nothing here imports Celery:

* :meth:`RetryPolicy.should_retry` — may a task that raised ``exc`` after
  ``retries`` earlier retries run again?  (``max_retries``, ``retry_on``,
  ``dont_retry_on``.)
* :meth:`RetryPolicy.delay` — how many seconds to wait before retry number
  ``attempt + 1`` (``attempt`` counts the retries so far, Celery's
  ``request.retries``: 0 after the first failure).

Three shapes, each capped at :attr:`RetryPolicy.cap` (one hour by default):

=================  ==========================================  ===============
policy             delay(attempt) before jitter                 1st, 2nd, 3rd
=================  ==========================================  ===============
:class:`Exponential`  ``base * factor ** attempt``              1 s, 2 s, 4 s
:class:`Linear`    ``start + step * attempt``                   1 s, 2 s, 3 s
:class:`Fixed`     ``seconds``                                  5 s, 5 s, 5 s
=================  ==========================================  ===============

**Jitter** spreads retries so that many tasks failing together (a service
that went down) do not come back in one wave: the delay is multiplied by a
random factor in ``[1 - jitter, 1 + jitter]``, then capped.  ``jitter=0``
gives the exact schedule.  With a ``seed`` the factor of each attempt is a
pure function of ``(seed, attempt)``, so :meth:`delay` and :meth:`delays`
return the same numbers in every process: tests compute the schedule a
worker will use; without one, each call draws fresh randomness.

Policies are immutable; :meth:`RetryPolicy.replace` derives a changed copy.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError

#: the default upper bound of any one delay: one hour, as GoRelay
DEFAULT_CAP = 3600.0
#: the default number of retries after the first run
DEFAULT_MAX_RETRIES = 5
#: the default jitter: each delay varies by up to ±20 %
DEFAULT_JITTER = 0.2

ExceptionTypes = tuple[type[BaseException], ...]


def _exception_types(value: Any, name: str) -> ExceptionTypes:
    if value is None:
        return ()
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(
                f"{name} must be exception classes (e.g. {name}=(TimeoutError, "
                f"ConnectionError)); got {item!r}."
            )
    return tuple(items)


def _number(value: Any, name: str, minimum: float, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds; got {value!r}.")
    number = float(value)
    if not (minimum <= number <= maximum) or math.isnan(number):
        bound = f"between {minimum:g} and {maximum:g}" if maximum != math.inf else \
            f"at least {minimum:g}"
        raise ConfigurationError(f"{name} must be {bound}; got {value!r}.")
    return number


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Base of the policies; see the module docstring.

    Attributes:
        max_retries: retries after the first run (0: never retry).
        retry_on: retry only exceptions of these types (empty: any ``Exception``).
        dont_retry_on: never retry these, even when ``retry_on`` matches.
        jitter: relative spread of each delay, 0 to 1.
        cap: the longest delay in seconds.
        seed: makes the jitter reproducible (see the module docstring).
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    retry_on: ExceptionTypes = field(default=())
    dont_retry_on: ExceptionTypes = field(default=())
    jitter: float = DEFAULT_JITTER
    cap: float = DEFAULT_CAP
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise ConfigurationError(
                f"max_retries must be a whole number >= 0; got {self.max_retries!r}."
            )
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on, "retry_on"))
        object.__setattr__(self, "dont_retry_on",
                           _exception_types(self.dont_retry_on, "dont_retry_on"))
        object.__setattr__(self, "jitter", _number(self.jitter, "jitter", 0.0, 1.0))
        object.__setattr__(self, "cap", _number(self.cap, "cap", 0.0))
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise ConfigurationError(f"seed must be an integer or None; got {self.seed!r}.")

    # -- the schedule ----------------------------------------------------------
    def base_delay(self, attempt: int) -> float:
        """The delay before retry ``attempt + 1`` without jitter or cap."""
        raise NotImplementedError

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` >= 0)."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ValueError(f"attempt must be a whole number >= 0; got {attempt!r}")
        try:
            raw = float(self.base_delay(attempt))
        except OverflowError:
            raw = math.inf
        if self.jitter:
            raw *= 1.0 + self.jitter * (2.0 * self._random(attempt) - 1.0)
        return max(0.0, min(raw, self.cap))

    def delays(self) -> Iterator[float]:
        """The delays before each of the ``max_retries`` retries, in order."""
        for attempt in range(self.max_retries):
            yield self.delay(attempt)

    def _random(self, attempt: int) -> float:
        if self.seed is None:
            return random.random()
        # A string seed hashes the same in every process (str hashing is salted).
        return random.Random(f"gorelay-retry:{self.seed}:{attempt}").random()

    # -- the decision ----------------------------------------------------------
    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the kind of failure this policy retries."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        if self.retry_on:
            return isinstance(exc, self.retry_on)
        return isinstance(exc, Exception)

    def should_retry(self, exc: BaseException, retries: int) -> bool:
        """Whether a task that raised ``exc`` after ``retries`` retries runs again."""
        return retries < self.max_retries and self.retryable(exc)

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Exponential(RetryPolicy):
    """``base * factor ** attempt`` seconds: 1 s, 2 s, 4 s, 8 s … capped at one hour."""

    base: float = 1.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "base", _number(self.base, "base", 0.0))
        object.__setattr__(self, "factor", _number(self.factor, "factor", 1.0))

    def base_delay(self, attempt: int) -> float:
        if attempt > 4096:  # far past any cap: avoid computing a huge power
            return math.inf
        return self.base * self.factor ** attempt


@dataclass(frozen=True, kw_only=True)
class Linear(RetryPolicy):
    """``start + step * attempt`` seconds: 1 s, 2 s, 3 s … capped."""

    start: float = 1.0
    step: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "start", _number(self.start, "start", 0.0))
        object.__setattr__(self, "step", _number(self.step, "step", 0.0))

    def base_delay(self, attempt: int) -> float:
        return self.start + self.step * attempt


@dataclass(frozen=True, kw_only=True)
class Fixed(RetryPolicy):
    """The same ``seconds`` before every retry."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "seconds", _number(self.seconds, "seconds", 0.0))

    def base_delay(self, attempt: int) -> float:
        return self.seconds


#: GoRelay's default: exponential from 1 s, doubling, capped at one hour, ±20 % jitter.
DEFAULT_POLICY: RetryPolicy = Exponential()

__all__ = [
    "DEFAULT_CAP", "DEFAULT_JITTER", "DEFAULT_MAX_RETRIES", "DEFAULT_POLICY",
    "Exponential", "Fixed", "Linear", "RetryPolicy",
]
