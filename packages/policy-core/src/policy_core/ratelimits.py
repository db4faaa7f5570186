"""Request rate limits of the APIs: route classes and the `CLASS=N/PERIOD;...` setting.

The spec is parsed once, by the composition root, into RateLimit records
that every RateLimiter implementation (memory, Redis) takes.
"""

from __future__ import annotations

import re
from typing import cast

from policy_core.ports import RateGranularity, RateLimit

__all__ = ["DEFAULT_RATE_LIMITS", "ROUTE_CLASSES", "RateLimits", "parse_rate_limits"]

ROUTE_CLASSES = ("evaluate", "usage", "read", "admin")
# Defaults: a guard rail against a runaway client on the admin plane, not a quota.
# Evaluation is not limited unless configured (the gateway in front sizes it; an
# unreachable limit would still cost every decision a counter update).
DEFAULT_RATE_LIMITS = "usage=20000/second;read=2000/second;admin=200/second"

#: Limits per route class; a class absent is not limited.
RateLimits = dict[str, tuple[RateLimit, ...]]

_ONE = re.compile(
    r"^\s*([0-9]+)\s*(?:/|\s+per\s+)\s*([0-9]+)?\s*(second|minute|hour|day|month|year)s?\s*$",
    re.IGNORECASE,
)


def parse_rate_limits(text: str | None) -> RateLimits:
    """`"evaluate=5000/second;admin=20/second"` -> limits per route class.

    Several limits for one class are separated by commas
    (`read=100/second,5000/hour`); a period may have a count (`10/5 minutes`)
    and be written `per` (`10 per minute`). None gives the defaults, "" no
    limits. Raises ValueError naming the bad part.
    """
    spec = DEFAULT_RATE_LIMITS if text is None else text
    out: RateLimits = {}
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ROUTE_CLASSES:
            raise ValueError(
                f"rate limit {part!r}: expected CLASS=N/PERIOD with CLASS one of "
                f"{', '.join(ROUTE_CLASSES)}"
            )
        limits = []
        for one in value.split(","):
            match = _ONE.match(one)
            if match is None or int(match[1]) < 1 or match[2] == "0":
                raise ValueError(f"rate limit {part!r}: {value.strip()!r} is not like 5000/second")
            granularity = cast(RateGranularity, match[3].lower())
            limits.append(RateLimit(int(match[1]), int(match[2] or 1), granularity))
        out[name] = tuple(limits)
    return out
