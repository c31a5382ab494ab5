"""The IETF draft's ``RateLimit-Policy`` and ``RateLimit`` fields, read by
a maintained structured-fields library (``http_sf``), never by hand, and
held to the draft's syntax (draft-ietf-httpapi-ratelimit-headers-11,
sections 3 and 4): a List of Items, each an sf-String naming a policy,
with the draft's parameters of the draft's types."""

from typing import Any

import http_sf

#: Each field's parameters and their types; the first is required.
POLICY_PARAMETERS = {"q": int, "qu": str, "w": int, "pk": bytes}
STATE_PARAMETERS = {"r": int, "t": int, "pk": bytes}


def _items(value: str, parameters: dict[str, type]) -> dict[str, dict[str, Any]]:
    parsed = http_sf.parse(value.encode("ascii"), tltype="list")
    assert isinstance(parsed, list)
    assert parsed, "the field is a non-empty List"
    items: dict[str, dict[str, Any]] = {}
    for member in parsed:
        name, params = member
        # An sf-String parses to str; a Token, an Integer or an inner list
        # would not.
        assert type(name) is str, f"{name!r} is not an sf-String"
        assert name not in items, f"{name!r} is listed twice"
        required = next(iter(parameters))
        assert required in params, f"{name!r} lacks {required!r}"
        for key, found in params.items():
            assert key in parameters, f"{key!r} is no parameter of the draft's"
            assert type(found) is parameters[key], f"{key}={found!r}"
            if parameters[key] is int:
                assert found >= 0
        if "w" in params and parameters is POLICY_PARAMETERS:
            assert params["w"] > 0, "a window is a positive Integer"
        items[name] = dict(params)
    return items


def policies(value: str) -> dict[str, dict[str, Any]]:
    """``RateLimit-Policy``'s items by policy name."""
    return _items(value, POLICY_PARAMETERS)


def states(value: str) -> dict[str, dict[str, Any]]:
    """``RateLimit``'s items by policy name."""
    return _items(value, STATE_PARAMETERS)
