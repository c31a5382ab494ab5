"""``RateLimitIETFDraft`` keeps the serialised policy of each tuple of
limits rather than serialising it for every response: its fields must stay,
to the byte, what ``http_sf`` makes of the whole lists, and a quota or a
count beyond the sf-Integer range is sent as the largest sf-Integer rather
than failing the response."""

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


LARGEST = 999_999_999_999_999


def reference(decisions, current_draft):
    """The fields as ``http_sf`` serialises the lists whole, from counts
    within its range."""
    decided = [item for item in decisions if item.remaining is not None]
    if not decided:
        return {}
    name = [quote(item.limit.name, safe=SAFE) for item in decided]
    if current_draft:
        policies = [
            (n, {"q": min(item.limit.max_requests, LARGEST), "w": item.limit.duration})
            for n, item in zip(name, decided, strict=True)
        ]
    else:
        policies = [
            (
                min(item.limit.max_requests, LARGEST),
                {"w": item.limit.duration, "name": n},
            )
            for n, item in zip(name, decided, strict=True)
        ]
    states = [
        (
            n,
            {
                "r": min(item.remaining or 0, LARGEST),
                "t": math.ceil(item.reset_after or 0.0),
            },
        )
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
    st.integers(1, MAX_REQUESTS),
    st.integers(1, MAX_DURATION),
    name=names,
)
decisions = st.builds(
    LimitDecision,
    limits,
    st.booleans(),
    st.none() | st.integers(0, 2 * MAX_REQUESTS),
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
def test_counts_beyond_the_sf_integer_range_are_sent_as_the_largest(current_draft):
    # A limit of MAX_REQUESTS, and a TokenBucket's burst, may pass it.
    decision = LimitDecision(
        Limit(MAX_REQUESTS, 60), True, 2 * MAX_REQUESTS, 30.0, None, None
    )
    with pytest.raises(ValueError, match="out of Integer range"):
        ser([(MAX_REQUESTS, {})])
    fields = RateLimitIETFDraft(current_draft=current_draft).provide_headers([decision])
    quota = f"q={LARGEST}" if current_draft else f"{LARGEST};"
    assert quota in fields["RateLimit-Policy"]
    assert fields["RateLimit"] == f'"{decision.limit.name}";r={LARGEST};t=30'
