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
    # key -> (window_end_us, count); the script keeps the end in whole ms
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
                if end is None:
                    end = (now + duration * 1_000_000) // 1000 * 1000
                self.state[key] = (end, count)
            reset = 0 if end is None else end - now
            reply += [status, limit, limit - count, reset, reset if status == 0 else 0]
        return reply

    def ttl_ms(self, key, limit, now):
        end, _ = self.state[key]
        return ceil_div(end - now, 1000)


@dataclass
class LeakyBucketModel:
    # key -> empty_at_us: when the bucket will have drained empty. Each
    # request drains in ceil(duration_us / limit) microseconds.
    state: dict[str, int] = field(default_factory=dict)

    def call(self, keys, limits, cost, now, consume):
        views = []
        for key, (limit, duration) in zip(keys, limits, strict=True):
            drain = ceil_div(duration * 1_000_000, limit)
            level = max(self.state.get(key, now) - now, 0)
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
            if consume and admitted:
                level += cost * drain
                self.state[key] = now + level
            reply += [status, limit, (limit * drain - level) // drain, level, retry]
        return reply

    def ttl_ms(self, key, limit, now):
        return ceil_div(self.state[key] - now, 1000)


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
