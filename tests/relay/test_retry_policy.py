"""Retry policies: the schedules users rely on, reproducible with a seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gorelay_kombu.errors import ConfigurationError
from gorelay_kombu.retry import DEFAULT_POLICY, Exponential, Fixed, Linear


def test_default_is_exponential_from_one_second_capped_at_one_hour() -> None:
    exact = DEFAULT_POLICY.replace(jitter=0, max_retries=14)
    assert list(exact.delays()) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600,
                                    3600]
    assert exact.delay(10_000) == 3600  # no overflow far past the cap


def test_jitter_stays_within_its_band_and_under_the_cap() -> None:
    policy = Exponential(jitter=0.2, max_retries=20)
    for attempt in range(20):
        base = min(2.0 ** attempt, 3600.0)
        for _ in range(20):
            delay = policy.delay(attempt)
            assert base * 0.8 <= delay <= min(base * 1.2, 3600.0)


def test_unseeded_jitter_varies() -> None:
    policy = Exponential(jitter=0.5)
    assert len({policy.delay(3) for _ in range(20)}) > 1


def test_seeded_delays_are_pure_and_the_same_in_another_process() -> None:
    policy = Exponential(seed=42, jitter=0.3, max_retries=6)
    here = list(policy.delays())
    assert here == list(policy.delays()) == [policy.delay(i) for i in range(6)]
    assert here != list(Exponential(seed=43, jitter=0.3, max_retries=6).delays())
    code = ("from gorelay_kombu.retry import Exponential;"
            "print(repr(list(Exponential(seed=42, jitter=0.3, max_retries=6).delays())))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert eval(other.stdout) == here  # noqa: S307 - our own repr of floats


def test_fixed_and_linear() -> None:
    assert list(Fixed(seconds=5, jitter=0, max_retries=3).delays()) == [5, 5, 5]
    assert list(Linear(start=2, step=3, jitter=0, max_retries=4).delays()) == [2, 5, 8, 11]
    assert Linear(start=1, step=1000, jitter=0, cap=60).delay(5) == 60


def test_retry_decision() -> None:
    policy = Exponential(max_retries=2, retry_on=(ConnectionError, TimeoutError),
                         dont_retry_on=ConnectionRefusedError)
    assert policy.should_retry(ConnectionError(), 0)
    assert policy.should_retry(TimeoutError(), 1)
    assert not policy.should_retry(TimeoutError(), 2)  # out of retries
    assert not policy.should_retry(ValueError(), 0)  # not in retry_on
    assert not policy.should_retry(ConnectionRefusedError(), 0)  # dont_retry_on wins
    assert Exponential().should_retry(ValueError(), 0)  # default: any Exception
    assert not Exponential().should_retry(KeyboardInterrupt(), 0)
    assert not Exponential(max_retries=0).should_retry(ValueError(), 0)


@pytest.mark.parametrize("kwargs", [
    {"max_retries": -1}, {"max_retries": 1.5}, {"jitter": 2}, {"cap": -1}, {"base": "1"},
    {"factor": 0.5}, {"retry_on": "ValueError"}, {"seed": "x"},
])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        Exponential(**kwargs)


def test_policies_are_keyword_only_and_immutable() -> None:
    with pytest.raises(TypeError):
        Fixed(5)  # type: ignore[misc] - would silently be max_retries=5
    policy = Fixed(seconds=5)
    with pytest.raises(AttributeError):
        policy.seconds = 1  # type: ignore[misc]
    assert policy.replace(seconds=1).seconds == 1 and policy.seconds == 5
