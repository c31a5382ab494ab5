"""Plain-Python reference models of the Lua algorithms, for tests only.

Each model keeps the same state a script keeps and answers with the reply
the script should give: five integers per limit (status, limit, remaining,
reset_after_us, retry_after_us). Times are integer microseconds.
"""

from dataclasses import dataclass, field

Reply = list[int]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class FixedWindowModel:
    # key -> (window_end_us, count)
    state: dict[str, tuple[int, int]] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume):
        views = []
        for key, (limit, _) in zip(keys, limits, strict=True):
            end, count = self.state.get(key, (None, 0))
            if end is None or end <= now:
                end, count = None, 0
            status = -1 if cost > limit else (0 if count + cost > limit else 1)
            views.append((end, count, status))
        admitted = all(status == 1 for _, _, status in views)
        reply: Reply = []
        for key, (limit, duration), (end, count, status) in zip(
            keys, limits, views, strict=True
        ):
            if consume and admitted:
                count += cost
                end = end if end is not None else now + duration * 1_000_000
                self.state[key] = (end, count)
            reset = 0 if end is None else end - now
            reply += [status, limit, limit - count, reset, reset if status == 0 else 0]
        return reply

    def ttl_ms(self, key, limit, now):
        end, _ = self.state[key]
        return ceil_div(end - now, 1000)


@dataclass
class LeakyBucketModel:
    # key -> (level, updated_us)
    state: dict[str, tuple[int, int]] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume):
        views = []
        for key, (limit, duration) in zip(keys, limits, strict=True):
            unit = duration * 1_000_000
            level = 0
            if key in self.state:
                stored, updated = self.state[key]
                elapsed = min(max(now - updated, 0), unit)
                level = max(stored - elapsed * limit, 0)
            retry = 0
            if cost > limit:
                status = -1
            elif level + cost * unit > limit * unit:
                status = 0
                retry = ceil_div(level + cost * unit - limit * unit, limit)
            else:
                status = 1
            views.append((level, status, retry))
        admitted = all(status == 1 for _, status, _ in views)
        reply: Reply = []
        for key, (limit, duration), (level, status, retry) in zip(
            keys, limits, views, strict=True
        ):
            unit = duration * 1_000_000
            if consume and admitted:
                level += cost * unit
                self.state[key] = (level, now)
            reply += [
                status,
                limit,
                (limit * unit - level) // unit,
                ceil_div(level, limit),
                retry,
            ]
        return reply

    def ttl_ms(self, key, limit, now):
        level, updated = self.state[key]
        return ceil_div(ceil_div(level - (now - updated) * limit, limit), 1000)
