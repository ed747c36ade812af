"""Reconnect policy shared by pusher and player (SPEC §3, §4). Pure: no clock, no I/O.

The seed's contract: a few fast attempts (each announced with 1102 / 2103), then the
NET_DISCONNECT error (-1307 / -2301). A box has no user to press "retry", so by default it
goes on with capped exponential backoff, announcing each scheduled attempt; `give_up`
restores the seed's behaviour of stopping there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryDecision:
    attempt: int
    """1-based number of the attempt this decision schedules (or would have)."""
    delay: float | None
    """Seconds to wait before that attempt; None = stop trying."""
    gave_up_now: bool
    """The fast attempts are spent with this failure: emit NET_DISCONNECT now."""
    scheduled: bool
    """The attempt is a slow, backed-off one: emit RETRY_SCHEDULED with its time."""


class ReconnectPolicy:
    """Decides when to try again after each failed connection.

    `failure()` is called once per failed attempt (including the loss that started it);
    `success()` when a connection works again, which resets the sequence.
    """

    def __init__(self, attempts: int = 3, first_delay: float = 0.5, max_delay: float = 60.0,
                 give_up: bool = False, growth: float = 2.0) -> None:
        if attempts < 1 or first_delay <= 0 or max_delay < first_delay or growth < 1:
            raise ValueError("invalid reconnect policy")
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.give_up = give_up
        self.growth = growth
        self._failures = 0
        # Growth steps after which the delay sits at the cap: a box retrying every minute
        # for a day would otherwise overflow `growth ** n` (a float) after ~1000 attempts.
        self._steps_to_cap = (math.ceil(math.log(max_delay / first_delay, growth))
                              if growth > 1 else 0)

    @property
    def failures(self) -> int:
        """Failed attempts since the last success (0 = connected or never tried)."""
        return self._failures

    @property
    def exhausted(self) -> bool:
        """True once the fast attempts are spent (the NET_DISCONNECT state)."""
        return self._failures > self.attempts

    def failure(self) -> RetryDecision:
        self._failures += 1
        n = self._failures  # the loss itself is failure 1; attempts follow it
        attempt = n
        gave_up_now = n == self.attempts + 1
        if n <= self.attempts:
            return RetryDecision(attempt, self._delay(n), False, False)
        if self.give_up:
            return RetryDecision(attempt, None, gave_up_now, False)
        return RetryDecision(attempt, self._delay(n), gave_up_now, True)

    def success(self) -> None:
        self._failures = 0

    def _delay(self, n: int) -> float:
        steps = min(n - 1, self._steps_to_cap)
        return min(self.max_delay, self.first_delay * self.growth ** steps)
