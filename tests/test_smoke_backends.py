from luathrottle import Limiter


def test_every_sync_backend_admits_exactly_the_limit(sync_backend):
    limiter = Limiter(3, 60, backend=sync_backend)
    assert [limiter.hit("k").allowed for _ in range(5)] == [True] * 3 + [False] * 2
