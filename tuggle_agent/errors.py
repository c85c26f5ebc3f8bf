"""The domain's error vocabulary: what happened, in words that say what to do.

Engine code raises these; only `front/` turns them into HTTP status codes (one table
in front/app.py), and retry decisions look at `transient`, never at a status code.
"""

from __future__ import annotations


class TuggleError(Exception):
    """Base class.  `transient`: the same request may succeed later without anyone acting
    (a holder appears, Consul comes back, disk is freed)."""

    transient = False


class NotFound(TuggleError):
    """Consul KV does not know the name (or that version): it was never stored or was deleted."""


class Exists(TuggleError):
    """The name is taken: objects are immutable."""


class Invalid(TuggleError):
    """The request itself is malformed (name, filter, body, watch payload)."""


class Forbidden(TuggleError):
    """The caller may not do this (write_allow, write token, control endpoints)."""


class FetchOnly(TuggleError):
    """This node does not accept uploads (fetch_only)."""


class TooLarge(TuggleError):
    """The upload is larger than max_upload_size."""


class NoSpace(TuggleError):
    """The data disk is full."""

    transient = True


class Unavailable(TuggleError):
    """A dependency (Consul, a hook's environment) cannot serve us right now."""

    transient = True
    retry_after: int | None = None


class NoHolder(Unavailable):
    """The object exists but no node holds a verified, passing copy yet."""

    retry_after = 5


class Busy(Unavailable):
    """This node is serving as many peers as it allows (max_serving_peers); try another holder."""

    retry_after = 1


class Vetoed(Unavailable):
    """A pre_download hook refused the download."""


class BadSources(TuggleError):
    """Holders exist, but none could deliver good bytes (corrupt, broken or stalled)."""

    transient = True


class TimedOut(TuggleError):
    """The fetch did not complete within fetch_timeout."""

    transient = True


class Deleted(NotFound):
    """The object was deleted or replaced while we worked on it."""


class Internal(TuggleError):
    """A bug or an unexpected condition; the log has the traceback."""
