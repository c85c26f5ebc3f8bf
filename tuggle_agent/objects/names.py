"""Object names and ids.

The name rule keeps every name a single path component inside the data dir (no
`/`, no leading dot so `..` and our own `.tmp`/`.tuggle` folders are out of
reach) and a key every Consul version accepts.
"""

from __future__ import annotations

import hashlib
import re

NAME_RULE = "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
_NAME_RE = re.compile(NAME_RULE)


class BadName(ValueError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise BadName(
            f"invalid object name {name!r}: names must match {NAME_RULE} "
            "(start with a letter or digit; then letters, digits, '.', '_' or '-'; at most 255 characters)"
        )
    return name


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and bool(_NAME_RE.fullmatch(name))


def object_id(name: str) -> str:
    """md5 hex of the name: the id the Go tuggle uses as the holder tag."""
    return hashlib.md5(name.encode()).hexdigest()
