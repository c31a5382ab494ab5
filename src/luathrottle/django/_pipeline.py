"""The request flow of a throttled view, sync and async.

A request goes through three stages, each of which can end it:

1. the throttles whose cache key ``runs_before_auth``, or 429;
2. authentication: the ``auth`` hooks, of which one must accept, or 401;
3. every other throttle, or 429;
4. the concurrency throttles, which are no rates: each takes a slot (one
   script call each), or 429, and the handler runs holding them; they are
   released when the response is produced, or when a streaming response's
   content ends (``luathrottle.django.concurrency``).

A client that ``LUATHROTTLE["exempt"]`` lists goes through authentication
alone: no stage asks a store anything, and nothing is decided or reported.

Each stage's checks go to the engine (``luathrottle._engine``), which
makes one script call per store and algorithm, and its verdicts stay on the
request for ``ThrottlingReport``. An async stage denied only by throttles
with a ``max_wait`` is held until it fits (``luathrottle._waiting``).
"""

import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, cast

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from luathrottle._answers import refusal
from luathrottle._checks import Check, Verdict, weak_request
from luathrottle._counting import (
    CountWhen,
    arefund_unless,
    refund_unless,
    spent_by,
)
from luathrottle._engine import adecide, decide
from luathrottle._waiting import ahold
from luathrottle.django._conf import Config, get_config
from luathrottle.django._holding import arun_held, run_held
from luathrottle.django._outcomes import (
    ThrottlingReport,
    forget_verdicts,
    record_verdicts,
    recorded_verdicts,
)
from luathrottle.django._responses import not_authenticated, respond
from luathrottle.django._session_user import session_user
from luathrottle.django._validation import Bound, check_throttles, counted_apart
from luathrottle.django.auth import BaseAsyncAuth, BaseSyncAuth
from luathrottle.django.concurrency import BaseConcurrencyThrottle
from luathrottle.django.throttles import BaseThrottle
from luathrottle.rates import MAX_LIMITS

__all__ = ["AnyAuth", "Endpoint", "Stages", "arun", "run"]

AnyAuth = BaseSyncAuth | BaseAsyncAuth
#: How a throttle reads a request's identity unless its class says otherwise.
_READ = BaseThrottle.identity


#: A stage's rate throttles, each with its view scope.
Rated = tuple[tuple[BaseThrottle[Any], str], ...]


class Stages(NamedTuple):
    """What a request of one handler goes through, under one ``config``:
    the before-auth and after-auth rate throttles, settings-level first,
    and the concurrency throttles, each with its view scope."""

    config: Config
    before: Rated
    after: Rated
    held: tuple[tuple[Any, str], ...]


class Endpoint:
    """Everything the requests of one handler go through."""

    def __init__(
        self,
        *,
        label: str,
        is_async: bool,
        bound: tuple[Bound, ...],
        auth: tuple[AnyAuth, ...],
        use_settings: bool,
        headers_on_every_response: bool,
        count_when: CountWhen | None = None,
    ) -> None:
        self.label = label
        self.count_when = count_when
        self.is_async = is_async
        self.bound = bound
        self.auth = auth
        self.use_settings = use_settings
        self.headers_on_every_response = headers_on_every_response
        self._stages: Stages | None = None
        self.stages()

    def stages(self) -> Stages:
        """The stages under the settings as they are now, found once per
        settings.

        Raises:
            ImproperlyConfigured: the settings do not fit this view.
        """
        config = get_config()
        stages = self._stages
        if stages is None or stages.config is not config:
            bound = counted_apart(self.label, self._settings_bound() + self.bound)
            held = tuple(
                (b.throttle, b.view_scope)
                for b in bound
                if isinstance(b.throttle, BaseConcurrencyThrottle)
            )
            rated = tuple(
                (b.throttle, b.view_scope)
                for b in bound
                if isinstance(b.throttle, BaseThrottle)
            )
            before = tuple(b for b in rated if b[0].cache_key.runs_before_auth)
            after = tuple(b for b in rated if not b[0].cache_key.runs_before_auth)
            if max(len(before), len(after)) > MAX_LIMITS:
                raise ImproperlyConfigured(
                    f"{self.label}: throttling holds more than {MAX_LIMITS} "
                    "throttles for one stage, more than one script call decides"
                )
            stages = self._stages = Stages(config, before, after, held)
        return stages

    def stages_for(self, request: HttpRequest) -> Stages:
        """``stages()``, or none for a client the settings exempt.

        Raises:
            ImproperlyConfigured: the settings do not fit this view.
        """
        stages = self.stages()
        if stages.config.exempts(request):
            return Stages(stages.config, (), (), ())
        return stages

    def _settings_bound(self) -> tuple[Bound, ...]:
        if not self.use_settings:
            return ()
        throttles = get_config().throttles_for(is_async=self.is_async, view=self.label)
        check_throttles(self.label, self.is_async, throttles)
        return tuple(Bound(item, self.label) for item in throttles)

    def finish(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Add the report's headers when the view asks for them everywhere."""
        if self.headers_on_every_response:
            for name, value in ThrottlingReport(request).report().items():
                response[name] = value
        return response


def _keyed(
    request: HttpRequest, stage: Rated
) -> list[tuple[BaseThrottle[Any], str, str]]:
    """Each throttle of ``stage`` with its view scope and the request's
    identity, for those whose cache key does not skip the request. The key
    comes first: a request it skips never reaches the rate callable, which
    may read what only its users have (a plan)."""
    keyed = []
    cache_key: object = None
    identity: str | None = None
    for throttle, view_scope in stage:
        # Throttles that share a cache key (the default one) read it once,
        # unless a throttle reads identities its own way.
        if throttle.cache_key is not cache_key or type(throttle).identity is not _READ:
            cache_key = throttle.cache_key
            identity = throttle.identity(request)
        if identity is not None:
            keyed.append((throttle, view_scope, identity))
    return keyed


def _checks(request: HttpRequest, stage: Rated, config: Config) -> list[Check]:
    # The verdicts stay on the request (``record_verdicts``).
    seen = weak_request(request)
    checks = []
    for throttle, view_scope, identity in _keyed(request, stage):
        limit = throttle.limit_for(request)
        if limit is not None:
            checks.append(
                throttle.keyed(
                    identity, view_scope, limit, request=seen, settings=config
                )
            )
    return checks


async def _achecks(request: HttpRequest, stage: Rated, config: Config) -> list[Check]:
    seen = weak_request(request)
    checks = []
    for throttle, view_scope, identity in _keyed(request, stage):
        limit = await throttle.alimit_for(request)
        if limit is not None:
            checks.append(
                throttle.keyed(
                    identity, view_scope, limit, request=seen, settings=config
                )
            )
    return checks


#: Whether a verdict admits, read in C: asked of every verdict of a stage.
_ADMITS = operator.attrgetter("decision.allowed")


def _answered(request: HttpRequest, verdicts: list[Verdict]) -> HttpResponse | None:
    """Keep the stage's verdicts on the request; the refusal, if any."""
    record_verdicts(request, verdicts)
    if all(map(_ADMITS, verdicts)):
        return None
    answer = refusal(
        [
            (verdict.decision, verdict.check.source.response_headers)
            for verdict in verdicts
        ]
    )
    return None if answer is None else respond(answer)


def _sync_stage(
    request: HttpRequest, stage: Rated, config: Config
) -> HttpResponse | None:
    checks = _checks(request, stage, config)
    if not checks:
        return None
    return _answered(request, decide(checks))


async def _async_stage(
    request: HttpRequest, stage: Rated, config: Config
) -> HttpResponse | None:
    checks = await _achecks(request, stage, config)
    if not checks:
        return None
    verdicts = await ahold(await adecide(checks), _max_wait)
    return _answered(request, verdicts)


def _max_wait(check: Check) -> float | None:
    """How long the throttle of ``check`` holds a denied request."""
    return cast("BaseThrottle[Any]", check.source).max_wait


def run(
    endpoint: Endpoint, request: HttpRequest, view: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    forget_verdicts(request)
    stages = endpoint.stages_for(request)
    config = stages.config
    # A stage, hook or refund with nothing to do is skipped, as each costs
    # calls at every request.
    response: HttpResponseBase | None = None
    if stages.before:
        response = _sync_stage(request, stages.before, config)
    if (
        response is None
        and endpoint.auth
        and not _sync_authenticated(request, endpoint.auth)
    ):
        response = not_authenticated()
    if response is None and stages.after:
        response = _sync_stage(request, stages.after, config)
    if response is None:
        count_when = endpoint.count_when
        hits = [] if count_when is None else spent_by(recorded_verdicts(request))
        if stages.held:
            response = run_held(
                stages.held, request, view, config.on_failure, config.shadow
            )
        else:
            response = view()
        if count_when is not None:
            refund_unless(count_when, response, hits)
    return endpoint.finish(request, response)


def _sync_authenticated(request: HttpRequest, hooks: Sequence[AnyAuth]) -> bool:
    # Views accept only hooks of their kind (_check_auth), so the
    # isinstance tests below only narrow types.
    accepting = (hook(request) for hook in hooks if isinstance(hook, BaseSyncAuth))
    return not hooks or any(accepting)


async def _authenticated(request: HttpRequest, hooks: Sequence[AnyAuth]) -> bool:
    for hook in hooks:
        if isinstance(hook, BaseAsyncAuth) and await hook(request):
            return True
    return not hooks


async def arun(
    endpoint: Endpoint,
    request: HttpRequest,
    view: Callable[[], Awaitable[HttpResponseBase]],
) -> HttpResponseBase:
    forget_verdicts(request)
    stages = endpoint.stages_for(request)
    config = stages.config
    # Each stage and hook is a coroutine to create and await, so the ones
    # with nothing to do are skipped.
    response: HttpResponseBase | None = None
    if stages.before:
        response = await _async_stage(request, stages.before, config)
    if (
        response is None
        and endpoint.auth
        and not await _authenticated(request, endpoint.auth)
    ):
        response = not_authenticated()
    if response is None and stages.after:
        # After-auth keys read request.user synchronously; resolve it here
        # so they never query the database from the event loop.
        user = await session_user(request)
        if user is not None:
            request.user = user
        response = await _async_stage(request, stages.after, config)
    if response is None:
        count_when = endpoint.count_when
        hits = [] if count_when is None else spent_by(recorded_verdicts(request))
        if stages.held:
            response = await arun_held(
                stages.held, request, view, config.on_failure, config.shadow
            )
        else:
            response = await view()
        if count_when is not None:
            await arefund_unless(count_when, response, hits)
    return endpoint.finish(request, response)
