"""wait_until's one rule for what a predicate's value and exceptions mean."""

import pytest

from tuggle_agent.harness import WaitTimeout, wait_until


def test_returns_the_first_truthy_value():
    values = iter([0, None, [], "ready"])
    assert wait_until(lambda: next(values), timeout=1, interval=0) == "ready"


def refused_until(calls: int):
    """A predicate that raises ConnectionError on its first `calls - 1` calls."""
    made = []

    def pred():
        made.append(1)
        if len(made) < calls:
            raise ConnectionError("refused")
        return True

    return pred


def test_other_exceptions_mean_not_yet():
    assert wait_until(refused_until(3), timeout=1, interval=0) is True


def test_the_last_error_is_named_and_chained_when_time_runs_out():
    with pytest.raises(WaitTimeout, match=r"waiting for the door \(last error: ConnectionError\('refused'\)\)") as info:
        wait_until(refused_until(10**9), timeout=0.05, interval=0.01, what="the door")
    assert isinstance(info.value.__cause__, ConnectionError)


def test_an_assertion_from_the_predicate_fails_at_once():
    calls = []

    def never():
        calls.append(1)
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited") as info:
        wait_until(never, timeout=5)
    assert len(calls) == 1 and not isinstance(info.value, WaitTimeout)


def test_a_falsy_predicate_times_out_as_an_assertion():
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for nothing"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, what="nothing")
