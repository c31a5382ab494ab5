"""Plain-Python reference models of the Lua algorithms, for tests only.

Each model keeps the same state a script keeps and answers with the reply
the script should give: five integers per limit (status, limit, remaining,
reset_after_us, retry_after_us). Times are integer microseconds.

A key names a limit by its name or window, so a call may judge a state
counted under other numbers: the models judge it as the scripts do
(``test_limit_changes.py``), and a hit, admitted or not, writes a state it
had to convert to the limit's new terms.

``each=True`` is ``counting="each"``: a hit counts in every limit that
admits it, even when another denies it; by default a hit any limit denies
counts in none (all or nothing).

``refund`` gives cost back as each script's "refund" mode does, to the
window or bucket of each limit's anchor (None: the current one), and
answers as a peek of cost 1 after it.
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction

Reply = list[int]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


#: The longest level or debt a bucket carries to a new rate, in µs.
BOUND = 2**52


def converted(level: int, was: int, step: int) -> int:
    """A bucket's level of ``level`` µs at ``was`` µs per request, in
    requests (a part of one rounded up) at ``step`` µs each."""
    return min(ceil_div(level, was), BOUND // step) * step


def refund_owed(state, keys, limits, cost, now, anchors):
    """Give ``cost`` steps back to buckets whose ``state`` is (when they
    are empty or full again, in µs, the step written with), the leaky and
    token buckets alike; an ``anchors[i]`` caps limit i's gift at what is
    owed until then. A bucket of another step, or owing nothing, is left."""
    for i, (key, (limit, duration)) in enumerate(zip(keys, limits, strict=True)):
        step = ceil_div(duration * 1_000_000, limit)
        if key not in state or state[key][1] != step:
            continue
        owed = state[key][0] - now
        give = cost * step
        if anchors is not None:
            give = min(give, max(anchors[i] - now, 0))
        if owed > 0:
            left = max(owed - give, 0)
            if left:
                state[key] = (now + left, step)
            else:
                del state[key]


@dataclass
class FixedWindowModel:
    # key -> (window_end_us, count, duration); the script keeps the end in
    # whole ms
    state: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume, each=False):
        views = []
        for key, (limit, duration) in zip(keys, limits, strict=True):
            end, count, was = self.state.get(key, (None, 0, duration))
            moved = False
            if end is not None and was != duration and end > now + duration * 10**6:
                # A named limit's shorter window: its count, for no longer.
                end, moved = (now + duration * 1_000_000) // 1000 * 1000, True
            if end is None or end <= now:
                end, count = None, 0
            status = -1 if cost > limit else (0 if count + cost > limit else 1)
            views.append((end, count, status, moved))
        admitted = all(view[2] == 1 for view in views)
        reply: Reply = []
        for key, (limit, duration), (end, count, status, moved) in zip(
            keys, limits, views, strict=True
        ):
            spends = consume and (admitted or (each and status == 1))
            if spends:
                count += cost
                if end is None:
                    end = (now + duration * 1_000_000) // 1000 * 1000
            if spends or (consume and moved):
                self.state[key] = (end, count, duration)
            reset = 0 if end is None else end - now
            remaining = max(limit - count, 0)
            reply += [status, limit, remaining, reset, reset if status == 0 else 0]
        return reply

    def refund(self, keys, limits, cost, now, anchors=None):
        for i, key in enumerate(keys):
            if key not in self.state:
                continue
            end, count, was = self.state[key]
            anchor = None if anchors is None else anchors[i]
            mine = anchor is None or abs(end - anchor) * 2 < was * 1_000_000
            if end > now and mine:
                self.state[key] = (end, max(count - cost, 0), was)
        return self.call(keys, limits, 1, now, False)

    def ttl_ms(self, key, limit, now):
        end, _, _ = self.state[key]
        return ceil_div(end - now, 1000)


def block_ttl_ms(ends_at: int, full: int, now: int) -> int:
    """The life, in ms, a bucket's hash has left at ``now`` after a write of
    a state that ends at ``ends_at``: to the end of the block of ``full``
    (a full bucket) after the one ``ends_at`` falls in (the scripts'
    "Expiry")."""
    return ceil_div(ends_at - ends_at % full + 2 * full - now, 1000)


@dataclass
class LeakyBucketModel:
    # key -> (empty_at_us, drain_us): when the bucket will have drained
    # empty, and in how long each request drains, ceil(duration_us / limit)
    # microseconds when written.
    state: dict[str, tuple[int, int]] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume, each=False):
        views = []
        moved = set()
        for key, (limit, duration) in zip(keys, limits, strict=True):
            drain = ceil_div(duration * 1_000_000, limit)
            empty_at, was = self.state.get(key, (now, drain))
            level = max(empty_at - now, 0)
            if was != drain and level > 0:
                level = converted(level, was, drain)
                moved.add(key)
            retry = 0
            if cost > limit:
                status = -1
            elif level + cost * drain > limit * drain:
                status = 0
                retry = level + cost * drain - limit * drain
            else:
                status = 1
            views.append((level, status, retry))
        admitted = all(status == 1 for _, status, _ in views)
        reply: Reply = []
        for key, (limit, duration), (level, status, retry) in zip(
            keys, limits, views, strict=True
        ):
            drain = ceil_div(duration * 1_000_000, limit)
            spends = consume and (admitted or (each and status == 1))
            if spends:
                level += cost * drain
            if spends or (consume and key in moved):
                self.state[key] = (now + level, drain)
            remaining = max((limit * drain - level) // drain, 0)
            reply += [status, limit, remaining, level, retry]
        return reply

    def refund(self, keys, limits, cost, now, anchors=None):
        refund_owed(self.state, keys, limits, cost, now, anchors)
        return self.call(keys, limits, 1, now, False)

    def ttl_ms(self, key, limit, now):
        return ceil_div(self.state[key][0] - now, 1000)

    def hash_ttl_ms(self, keys, limits, now):
        """The life left to the hash that holds ``keys``
        (lua/leaky_bucket.lua, "Expiry"): for each state written, to the end
        of the block of F after the one its bucket is empty in, F its full
        bucket, max_requests * drain (these scenarios change no limit, so
        no bucket holds more); and the most that may be left when a Redis
        server counts on its own clock, three full buckets of the longest
        limit."""
        needed, most = 0, 0
        for key, (limit, duration) in zip(keys, limits, strict=True):
            drain = ceil_div(duration * 1_000_000, limit)
            most = max(most, ceil_div(3 * limit * drain, 1000) + 1)
            if key in self.state:
                empty_at, was = self.state[key]
                needed = max(needed, block_ttl_ms(empty_at, limit * was, now))
        return needed, most


@dataclass
class TokenBucketModel:
    # GCRA. key -> tat_us: when the bucket will be full again. A token comes
    # back every ceil(duration_us / limit) microseconds; the bucket holds
    # burst of them (each limit's own max_requests when burst is None).
    # The interval a state was written with is kept beside it.
    burst: int | None = None
    state: dict[str, tuple[int, int]] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume, each=False):
        views = []
        moved = set()
        for key, (limit, duration) in zip(keys, limits, strict=True):
            burst = limit if self.burst is None else self.burst
            interval = ceil_div(duration * 1_000_000, limit)
            tat, was = self.state.get(key, (now, interval))
            debt = max(tat - now, 0)
            if was != interval and debt > 0:
                debt = converted(debt, was, interval)
                moved.add(key)
            retry = 0
            if cost > burst:
                status = -1
            elif debt + cost * interval > burst * interval:
                status = 0
                retry = debt + cost * interval - burst * interval
            else:
                status = 1
            views.append((burst, interval, debt, status, retry))
        admitted = all(view[3] == 1 for view in views)
        reply: Reply = []
        for key, (limit, _), (burst, interval, debt, status, retry) in zip(
            keys, limits, views, strict=True
        ):
            spends = consume and (admitted or (each and status == 1))
            if spends:
                debt += cost * interval
            if spends or (consume and key in moved):
                self.state[key] = (now + debt, interval)
            remaining = max((burst * interval - debt) // interval, 0)
            reply += [status, limit, remaining, debt, retry]
        return reply

    def refund(self, keys, limits, cost, now, anchors=None):
        refund_owed(self.state, keys, limits, cost, now, anchors)
        return self.call(keys, limits, 1, now, False)

    def ttl_ms(self, key, limit, now):
        return ceil_div(self.state[key][0] - now, 1000)

    def hash_ttl_ms(self, keys, limits, now):
        """The life left to the hash that holds ``keys`` (lua/token_bucket.lua,
        "Expiry"): for each state written, to the end of the block of F after
        the one its bucket is full in, F its full bucket, burst * interval
        (these scenarios change no limit, so no bucket owes more); and the
        most that may be left when a Redis server counts on its own clock,
        three full buckets of the longest limit."""
        needed, most = 0, 0
        for key, (limit, duration) in zip(keys, limits, strict=True):
            burst = limit if self.burst is None else self.burst
            interval = ceil_div(duration * 1_000_000, limit)
            most = max(most, ceil_div(3 * burst * interval, 1000) + 1)
            if key in self.state:
                tat, was = self.state[key]
                needed = max(needed, block_ttl_ms(tat, burst * was, now))
        return needed, most


def sliding_unit(limit: int, duration_us: int) -> int:
    """The step, in microseconds, in which the previous window's weight
    falls: 1, or the smallest power of ten up to a second that keeps
    limit * duration_us / unit within 2**52."""
    unit = 1
    while limit * duration_us > 2**52 * unit and unit < 1_000_000:
        unit *= 10
    return unit


@dataclass
class SlidingWindowModel:
    # key -> (window, previous, current, duration_us): the counts of the
    # window starting at window * duration_us and of the one before it.
    # Admission is decided with fractions, and retry_after found by
    # bisection over the next two windows, so that neither copies the
    # script's integer shortcuts.
    state: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)

    def moved(self, key, duration_us, now):
        """The state of ``key`` as a limit of ``duration_us`` reads it at
        ``now``, and whether a hit writes it: a state of another duration
        moves to this one's window with what its old window still counts."""
        state = self.state.get(key)
        if state is None or state[3] == duration_us:
            return state, False
        stored, previous, current, was = state
        old = now // was
        carried = previous + current if stored == old else 0
        carried = current if stored == old - 1 else carried
        if not carried:
            return None, False
        return (now // duration_us, 0, carried, duration_us), True

    @staticmethod
    def counts(state, duration_us, at):
        window = at // duration_us
        stored, previous, current, _ = state or (window - 2, 0, 0, 0)
        if stored == window:
            return window, previous, current
        if stored == window - 1:
            return window, current, 0
        return window, 0, 0

    @staticmethod
    def estimate(limit, duration_us, previous, current, elapsed_us):
        # Counts above the limit, counted under a higher one, weigh as a
        # full window.
        previous, current = min(previous, limit), min(current, limit)
        unit = sliding_unit(limit, duration_us)
        steps = duration_us // unit
        return previous * Fraction(steps - elapsed_us // unit, steps) + current

    def fits(self, state, limit, duration_us, cost, at):
        window, previous, current = self.counts(state, duration_us, at)
        elapsed = at - window * duration_us
        estimate = self.estimate(limit, duration_us, previous, current, elapsed)
        return estimate + cost <= limit

    def call(self, keys, limits, cost, now, consume, each=False):
        views = []
        for key, (limit, duration) in zip(keys, limits, strict=True):
            duration_us = duration * 1_000_000
            state, moved = self.moved(key, duration_us, now)
            retry = 0
            if cost > limit:
                status = -1
            elif self.fits(state, limit, duration_us, cost, now):
                status = 1
            else:
                status = 0
                low, high = now, (now // duration_us + 2) * duration_us
                while low + 1 < high:  # fits(high), not fits(low)
                    middle = (low + high) // 2
                    if self.fits(state, limit, duration_us, cost, middle):
                        high = middle
                    else:
                        low = middle
                retry = high - now
            views.append((status, retry, state, moved))
        admitted = all(view[0] == 1 for view in views)
        reply: Reply = []
        for key, (limit, duration), (status, retry, state, moved) in zip(
            keys, limits, views, strict=True
        ):
            duration_us = duration * 1_000_000
            window, previous, current = self.counts(state, duration_us, now)
            spends = consume and (admitted or (each and status == 1))
            if spends:
                current += cost
            if spends or (consume and moved):
                self.state[key] = (window, previous, current, duration_us)
            start = window * duration_us
            estimate = self.estimate(limit, duration_us, previous, current, now - start)
            remaining = max(limit - math.ceil(estimate), 0)
            if current:
                reset = start + 2 * duration_us - now
            elif previous:
                reset = start + duration_us - now
            else:
                reset = 0
            reply += [status, limit, remaining, reset, retry]
        return reply

    def refund(self, keys, limits, cost, now, anchors=None):
        for i, (key, (_, duration)) in enumerate(zip(keys, limits, strict=True)):
            duration_us = duration * 1_000_000
            state = self.state.get(key)
            window = now // duration_us
            if state is None or state[3] != duration_us or state[0] != window:
                continue
            anchor = None if anchors is None else anchors[i]
            ends = (window + 2) * duration_us
            if anchor is None or abs(ends - anchor) * 2 < duration_us:
                stored, previous, current, _ = state
                self.state[key] = (
                    stored,
                    previous,
                    max(current - cost, 0),
                    duration_us,
                )
        return self.call(keys, limits, 1, now, False)

    def ttl_ms(self, key, limit, now):
        window, _, _, duration_us = self.state[key]
        return ceil_div((window + 2) * duration_us - now, 1000)


@dataclass
class ConcurrencyModel:
    # key -> {lease id: expiry_us}; a lease expires when now reaches it
    state: dict[str, dict[str, int]] = field(default_factory=dict)

    def call(self, key, mode, lease_id, now, max_in_flight, lease_us):
        leases = {
            held: expiry
            for held, expiry in self.state.get(key, {}).items()
            if expiry > now
        }
        status, retry = 0, 0
        if mode == "acquire":
            if len(leases) < max_in_flight:
                leases[lease_id] = now + lease_us
                status = 1
            else:
                retry = min(leases.values()) - now
        elif mode == "renew":
            if lease_id in leases:
                leases[lease_id] = now + lease_us
                status = 1
        elif leases.pop(lease_id, None) is not None:
            status = 1
        self.state[key] = leases
        return [status, len(leases), retry, 0]

    def ttl_ms(self, key, now):
        return ceil_div(max(self.state[key].values()) - now, 1000)
