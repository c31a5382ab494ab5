"""``RateLimitIETFDraft`` keeps each limit's serialised policy and name
rather than serialising them for every response: its fields must stay, to
the byte, what ``http_sf`` makes of the whole lists, and fail where
``http_sf`` fails (a quota beyond the sf-Integer range)."""

import math
from urllib.parse import quote

import pytest
from http_sf import ser
from hypothesis import given
from hypothesis import strategies as st

from luathrottle import Limit
from luathrottle.decision import LimitDecision
from luathrottle.headers import RateLimitIETFDraft
from luathrottle.rates import MAX_DURATION, MAX_NAME, MAX_REQUESTS

SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def reference(decisions, current_draft):
    """The fields as ``http_sf`` serialises the lists whole."""
    decided = [item for item in decisions if item.remaining is not None]
    if not decided:
        return {}
    name = [quote(item.limit.name, safe=SAFE) for item in decided]
    if current_draft:
        policies = [
            (n, {"q": item.limit.max_requests, "w": item.limit.duration})
            for n, item in zip(name, decided, strict=True)
        ]
    else:
        policies = [
            (item.limit.max_requests, {"w": item.limit.duration, "name": n})
            for n, item in zip(name, decided, strict=True)
        ]
    states = [
        (n, {"r": item.remaining or 0, "t": math.ceil(item.reset_after or 0.0)})
        for n, item in zip(name, decided, strict=True)
    ]
    return {"RateLimit-Policy": ser(policies), "RateLimit": ser(states)}


names = st.text(
    st.characters(codec="utf-8", exclude_categories=("C", "Z"))
    | st.sampled_from(' "%\\'),
    min_size=1,
    max_size=MAX_NAME,
).filter(str.isprintable)
limits = st.builds(
    Limit,
    st.integers(1, MAX_REQUESTS - 1),
    st.integers(1, MAX_DURATION),
    name=names,
)
decisions = st.builds(
    LimitDecision,
    limits,
    st.booleans(),
    st.none() | st.integers(0, MAX_REQUESTS - 1),
    st.none() | st.floats(0, MAX_DURATION),
    st.none(),
    st.none(),
)


@given(st.lists(decisions, min_size=1, max_size=4), st.booleans())
def test_the_fields_are_http_sfs_to_the_byte(chosen, current_draft):
    provider = RateLimitIETFDraft(current_draft=current_draft)
    # Twice: the second time from what the first kept.
    assert provider.provide_headers(chosen) == reference(chosen, current_draft)
    assert provider.provide_headers(chosen) == reference(chosen, current_draft)


@pytest.mark.parametrize("current_draft", [True, False])
def test_a_quota_beyond_the_sf_integer_range_fails_as_http_sf_does(current_draft):
    decision = LimitDecision(Limit(MAX_REQUESTS, 60), True, 5, 30.0, None, None)
    with pytest.raises(ValueError, match="out of Integer range"):
        reference([decision], current_draft)
    with pytest.raises(ValueError, match="out of Integer range"):
        RateLimitIETFDraft(current_draft=current_draft).provide_headers([decision])


def test_a_remaining_beyond_the_sf_integer_range_fails_as_http_sf_does():
    decision = LimitDecision(Limit(5, 60), True, MAX_REQUESTS, 30.0, None, None)
    with pytest.raises(ValueError, match="out of Integer range"):
        RateLimitIETFDraft(current_draft=True).provide_headers([decision])
