"""Decoding replies and formatting headers: pure, no server."""

import pytest

from luathrottle import Decision, Limit, Reason
from luathrottle.headers import (
    RateLimitIETFDraft,
    RetryAfter,
    XRateLimit,
    collect_headers,
)

SECOND = Limit(1, 1, name="per-second")
MINUTE = Limit(5, 60, name="per-minute")


def test_reply_decodes_into_a_decision():
    decision = Decision.from_reply(
        [SECOND, MINUTE], [1, 1, 0, 1_000_000, 0, 1, 5, 4, 60_000_000, 0]
    )
    assert decision.allowed
    assert (decision.limit, decision.remaining, decision.reset_after) == (1, 0, 1.0)
    assert decision.retry_after is None
    assert [item.remaining for item in decision.limits] == [0, 4]


def test_denial_reports_the_longest_wait():
    decision = Decision.from_reply(
        [SECOND, MINUTE],
        [0, 1, 0, 400_000, 400_000, 0, 5, 0, 59_500_000, 59_500_000],
    )
    assert (decision.allowed, decision.limit, decision.retry_after) == (False, 5, 59.5)
    assert decision.reason == Reason.LIMIT_EXCEEDED


def test_cost_denial_has_no_retry():
    decision = Decision.from_reply([SECOND], [-1, 1, 1, 0, 0])
    assert (decision.reason, decision.retry_after) == (Reason.COST_EXCEEDS_LIMIT, None)


def test_malformed_reply_is_rejected():
    with pytest.raises(ValueError, match="5 fields for 2 limits"):
        Decision.from_reply([SECOND, MINUTE], [1, 1, 0, 0, 0])


def denied_one_per_minute(reset_us):
    return Decision.from_reply(
        [Limit(1, 60, name="RemoteAddr")], [0, 1, 0, reset_us, reset_us]
    ).limits


def test_seed_x_ratelimit_and_retry_after():
    headers = collect_headers(
        [XRateLimit(), RetryAfter()], denied_one_per_minute(59_200_000)
    )
    assert headers == {
        "X-RateLimit-Limit": "1",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "60",
        "Retry-After": "60",
    }


def test_retry_after_is_absent_when_allowed():
    allowed = Decision.from_reply([MINUTE], [1, 5, 4, 60_000_000, 0]).limits
    assert RetryAfter().provide_headers(allowed) == {}


def test_seed_ietf_draft_headers():
    assert RateLimitIETFDraft().provide_headers(denied_one_per_minute(58_400_000)) == {
        "RateLimit-Policy": '1;w=60;name="RemoteAddr"',
        "RateLimit": '"RemoteAddr";r=0;t=59',
    }


def test_seed_ietf_draft_headers_for_two_throttles():
    decisions = Decision.from_reply(
        [SECOND, MINUTE], [1, 1, 0, 1_000_000, 0, 1, 5, 4, 60_000_000, 0]
    ).limits
    assert RateLimitIETFDraft().provide_headers(decisions) == {
        "RateLimit-Policy": '1;w=1;name="per-second", 5;w=60;name="per-minute"',
        "RateLimit": '"per-second";r=0;t=1, "per-minute";r=4;t=60',
    }
    assert (
        RateLimitIETFDraft(current_draft=True).provide_headers(decisions)[
            "RateLimit-Policy"
        ]
        == '"per-second";q=1;w=1, "per-minute";q=5;w=60'
    )


def test_header_specs_follow_the_seed():
    specs = XRateLimit().provide_headers_specs() | RetryAfter().provide_headers_specs()
    assert sorted(specs) == [
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ]
    assert specs["Retry-After"] == {
        "description": "Indicates how long the user agent should wait before "
        "making a follow-up request",
        "required": True,
        "schema": {"type": "string"},
    }
    assert sorted(RateLimitIETFDraft().provide_headers_specs()) == [
        "RateLimit",
        "RateLimit-Policy",
    ]


def test_no_decisions_no_headers():
    assert collect_headers([XRateLimit(), RetryAfter(), RateLimitIETFDraft()], []) == {}
