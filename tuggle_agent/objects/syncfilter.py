"""`?sync` node/service/tag filters, checked and matched as Consul matches event filters.

Consul's filtered user events (`consul event -node -service -tag`) take Go regexps:
RE2 syntax, matched with `regexp.MatchString`, i.e. *anywhere* in the string (anchor
with `^`/`$` for a whole match).  The filters of a `?sync` request travel in KV
metadata that any node reads, so they are untrusted input; this module is the one
place that compiles them.

Invariants:
- every pattern is compiled by RE2 (google-re2), never by Python's backtracking `re`:
  matching is linear in the input whatever the pattern, so a hostile filter cannot
  stall a node (nor `/?ping`, which shares its worker threads);
- `check` accepts exactly what `matches` can evaluate: a filter that passes `check`
  never raises in `matches`;
- RE2 and Go accept the same syntax except for `\\C` (any byte), which Go refuses and
  so do we; Perl-only constructs (backreferences, lookaround, possessive repeats)
  do not compile in either.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import re2

# Long enough for any real host/service naming scheme, short enough that a planted
# pattern cannot make compilation expensive (RE2 also caps its program size).
MAX_FILTER_LEN = 256


class BadFilter(ValueError):
    """A sync filter Consul would refuse, or one too large to accept; names the key."""


def _options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # RE2 would print every refused pattern to stderr
    return opts


_OPTIONS = _options()


@functools.lru_cache(maxsize=128)
def _compile(pattern: str) -> re2._Regexp:
    """Compiled once per distinct pattern: reconcile matches every synced object on
    every KV change, and the same few filters come back each time."""
    return re2.compile(pattern, _OPTIONS)


def _has_any_byte_escape(pattern: str) -> bool:
    """True for `\\C`, which RE2 accepts but Go's regexp refuses."""
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            if pattern[i + 1] == "C":
                return True
            i += 2
        else:
            i += 1
    return False


def _compiled(key: str, pattern: str):
    if not isinstance(pattern, str):
        raise BadFilter(f"sync filter {key}: expected a string, got {type(pattern).__name__}")
    if len(pattern) > MAX_FILTER_LEN:
        raise BadFilter(f"sync filter {key}: longer than {MAX_FILTER_LEN} characters ({len(pattern)})")
    if _has_any_byte_escape(pattern):
        raise BadFilter(f"sync filter {key}={pattern!r}: \\C is not Go regexp syntax")
    try:
        return _compile(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise BadFilter(f"sync filter {key}={pattern!r} is not a valid Go (RE2) regexp: {reason}") from None


def check(node: str, service: str, tag: str) -> None:
    """Raise BadFilter unless Consul would accept these event filters ('' = no filter)."""
    for key, pattern in (("node", node), ("service", service), ("tag", tag)):
        _compiled(key, pattern)
    if tag and not service:
        raise BadFilter("sync filter tag: a tag filter needs a service filter too (as in Consul events)")


def matches(node_re: str, service_re: str, tag_re: str, node_name: str, service_name: str, tags: Iterable[str]) -> bool:
    """Would a Consul agent named `node_name`, running `service_name` with `tags`,
    process an event with these filters?  Consul's rules: an empty filter matches
    anything; each pattern matches anywhere in the string; the tag filter is checked
    only on services the service filter matched, and one matching tag is enough.

    Raises BadFilter for filters `check` refuses (metadata validation has already
    refused those, so for metadata read through `objects.metadata` it never does)."""
    check(node_re, service_re, tag_re)
    if node_re and not _compile(node_re).search(node_name):
        return False
    if service_re:
        if not _compile(service_re).search(service_name):
            return False
        if tag_re:
            tag = _compile(tag_re)
            return any(tag.search(t) for t in tags)
    return True
