"""``luathrottle.flask``: route limits, blueprint limits, app-wide
defaults, exemptions, settings from ``app.config``, sync and async views,
and the answers of every other door, on Redis and the embedded store."""

import json
import uuid

import pytest
from flask import Blueprint, Flask, request

from ietf_fields import policies, states
from luathrottle import Limit, Limiter
from luathrottle.backends.memory import MemoryBackend
from luathrottle.backends.redis import SyncRedis
from luathrottle.flask import Throttle
from test_prometheus import dead_store


@pytest.fixture(params=["memory", "redis"])
def backend(request):
    if request.param == "memory":
        return MemoryBackend()
    return SyncRedis(request.getfixturevalue("redis_client"))


def client_of(app):
    """A test client of a client address of its own, so that counts left
    on Redis by earlier runs never meet it."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"client-{uuid.uuid4().hex}"
    return client


def statuses(client, path, times, **kwargs):
    return [client.get(path, **kwargs).status_code for _ in range(times)]


def make_app(backend, **options):
    app = Flask(f"test-{uuid.uuid4().hex}")
    throttle = Throttle(app, backend=backend, **options)
    return app, throttle


def test_a_route_limit_answers_as_every_door(backend):
    app, throttle = make_app(backend)

    @app.get("/search")
    @throttle.limit("2/minute")
    def search():
        return "found"

    client = client_of(app)
    first = client.get("/search")
    assert first.status_code == 200
    assert policies(first.headers["RateLimit-Policy"]) == {"2/60s": {"q": 2, "w": 60}}
    assert states(first.headers["RateLimit"])["2/60s"]["r"] == 1
    assert client.get("/search").status_code == 200
    denied = client.get("/search")
    assert denied.status_code == 429
    assert denied.headers["Content-Type"] == "application/json"
    assert json.loads(denied.data) == {
        "detail": [{"msg": "Too many requests", "type": "ratelimit"}]
    }
    assert 0 < int(denied.headers["Retry-After"]) <= 60
    assert states(denied.headers["RateLimit"])["2/60s"]["r"] == 0


def test_clients_count_apart_and_a_key_of_none_skips(backend):
    run = uuid.uuid4().hex
    app, throttle = make_app(
        backend,
        key=lambda: (user + run) if (user := request.headers.get("X-User")) else None,
    )

    @app.get("/")
    @throttle.limit("1/minute")
    def index():
        return "ok"

    client = client_of(app)
    assert statuses(client, "/", 2, headers={"X-User": "ann"}) == [200, 429]
    assert statuses(client, "/", 2, headers={"X-User": "bob"}) == [200, 429]
    # No user: the request is not counted, and gets no quota headers.
    anonymous = client.get("/")
    assert anonymous.status_code == 200
    assert "RateLimit-Policy" not in anonymous.headers


def test_defaults_from_the_config_count_each_route_on_its_own(backend):
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config["LUATHROTTLE_DEFAULT_LIMITS"] = "2/minute;100/day"
    throttle = Throttle(backend=backend)
    app.add_url_rule("/a", "a", lambda: "a")
    app.add_url_rule("/b", "b", lambda: "b")

    @app.get("/own")
    @throttle.limit("1/minute")
    def own():
        return "own"

    throttle.init_app(app)
    client = client_of(app)
    assert statuses(client, "/a", 3) == [200, 200, 429]
    assert statuses(client, "/b", 3) == [200, 200, 429]
    # A route's own limits replace the defaults.
    assert statuses(client, "/own", 2) == [200, 429]


def test_a_scope_shares_one_count_between_routes(backend):
    app, throttle = make_app(backend)
    shared = throttle.limit("3/minute", scope="reads")
    app.add_url_rule("/x", "x", shared(lambda: "x"))
    app.add_url_rule("/y", "y", shared(lambda: "y"))
    client = client_of(app)
    assert statuses(client, "/x", 2) + statuses(client, "/y", 2) == [
        200,
        200,
        200,
        429,
    ]


def test_blueprint_limits_and_exemptions(backend):
    app, throttle = make_app(backend, default_limits="1/minute")
    api = Blueprint("api", __name__)
    admin = Blueprint("admin", __name__)
    throttle.limit("2/minute")(api)
    throttle.exempt(admin)

    @api.get("/items")
    def items():
        return "items"

    @api.get("/upload")
    @throttle.limit("1/hour")
    def upload():
        return "uploaded"

    @admin.get("/stats")
    def stats():
        return "stats"

    @app.get("/health")
    @throttle.exempt
    def health():
        return "ok"

    app.register_blueprint(api, url_prefix="/api")
    app.register_blueprint(admin, url_prefix="/admin")
    client = client_of(app)
    assert statuses(client, "/api/items", 3) == [200, 200, 429]
    # The route's own limit wins over its blueprint's.
    assert statuses(client, "/api/upload", 2) == [200, 429]
    assert statuses(client, "/admin/stats", 5) == [200] * 5
    assert statuses(client, "/health", 5) == [200] * 5


def test_several_limits_of_a_route_are_all_or_nothing(backend):
    app, throttle = make_app(backend)
    everyone = f"everyone-{uuid.uuid4().hex}"

    @app.get("/burst")
    @throttle.limit("2/minute")
    @throttle.limit("5/minute", key=lambda: "everyone", scope=everyone)
    def burst():
        return "ok"

    client = client_of(app)
    assert statuses(client, "/burst", 4) == [200, 200, 429, 429]
    wider = Limiter(5, 60, backend=backend, scope=everyone)
    # The two denied requests cost the wider limit nothing.
    assert wider.peek("everyone").remaining == 3


def test_async_views_are_limited(backend):
    app, throttle = make_app(backend)

    @app.get("/slow")
    @throttle.limit("1/minute")
    async def slow():
        return "done"

    assert statuses(client_of(app), "/slow", 2) == [200, 429]


def test_shadow_mode_counts_but_never_refuses(backend):
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config["LUATHROTTLE_SHADOW"] = True
    throttle = Throttle(app, backend=backend, key=lambda: "shadowed")
    scope = f"shadow-{uuid.uuid4().hex}"

    @app.get("/")
    @throttle.limit("2/minute", scope=scope)
    def index():
        return "ok"

    client = client_of(app)
    answers = [client.get("/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert all("RateLimit-Policy" not in answer.headers for answer in answers)
    limiter = Limiter(Limit(2, 60), backend=backend, scope=scope)
    assert limiter.peek("shadowed").remaining == 0


def test_a_limit_on_trial_counts_beside_an_enforced_one(backend):
    app, throttle = make_app(backend)

    @app.get("/")
    @throttle.limit([Limit(3, 60), Limit(1, 60, name="trial", shadow=True)])
    def index():
        return "ok"

    assert statuses(client_of(app), "/", 4) == [200, 200, 200, 429]


def test_disabled_by_the_config_nothing_is_counted():
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config["LUATHROTTLE_ENABLED"] = False
    # A dead store: any call to it would fail the request under "deny".
    throttle = Throttle(app, backend=dead_store(), on_failure="deny")

    @app.get("/")
    @throttle.limit("1/minute")
    def index():
        return "ok"

    answers = [client_of(app).get("/") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3
    assert all("RateLimit-Policy" not in answer.headers for answer in answers)


@pytest.mark.parametrize(("policy", "status"), [("allow", 200), ("deny", 503)])
def test_a_dead_store_follows_the_failure_policy(policy, status):
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config["LUATHROTTLE_ON_FAILURE"] = policy
    throttle = Throttle(app, backend=dead_store())

    @app.get("/")
    @throttle.limit("1/minute")
    def index():
        return "ok"

    answer = client_of(app).get("/")
    assert answer.status_code == status
    if status == 503:
        assert json.loads(answer.data)["detail"][0]["msg"] == (
            "Rate limiting is unavailable"
        )


def test_the_storage_url_setting_counts_on_redis(redis_url):
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config["LUATHROTTLE_STORAGE_URL"] = redis_url
    scope = f"flask-url-{uuid.uuid4().hex}"
    throttle = Throttle(app, key=lambda: "k")

    @app.get("/")
    @throttle.limit("2/minute", scope=scope)
    def index():
        return "ok"

    assert statuses(client_of(app), "/", 3) == [200, 200, 429]
    limiter = Limiter(2, 60, backend=SyncRedis.from_url(redis_url), scope=scope)
    assert limiter.peek("k").remaining == 0


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("LUATHROTTLE_DEFAULT_LIMITS", "5 per fortnight", ValueError),
        ("LUATHROTTLE_ON_FAILURE", "maybe", ValueError),
        ("LUATHROTTLE_SHADOW", "yes", TypeError),
        ("LUATHROTTLE_ENABLED", 0, TypeError),
        ("LUATHROTTLE_STORAGE_URL", 6379, TypeError),
    ],
)
def test_a_bad_setting_fails_at_init_naming_it(setting, value, error):
    app = Flask(f"test-{uuid.uuid4().hex}")
    app.config[setting] = value
    with pytest.raises(error, match=setting):
        Throttle(app)


def test_bad_arguments_fail_at_import_naming_them():
    throttle = Throttle()
    with pytest.raises(ValueError, match="limits"):
        throttle.limit("often")
    with pytest.raises(TypeError, match="key"):
        throttle.limit("1/minute", key="user")
    with pytest.raises(TypeError, match="scope"):
        throttle.limit("1/minute", scope="")
    with pytest.raises(ValueError, match="give them name="):
        throttle.limit(["1/minute", "5/minute"])
    with pytest.raises(TypeError, match="key"):
        Throttle(key=42)
