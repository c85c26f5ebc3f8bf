"""Building the py-consul client and turning its failures into one clear error.

Invariants of every client built here:
- settings follow Consul's api.DefaultConfig (see config.ConsulSettings); the token
  given is the one sent, whatever the process environment says;
- idempotent reads (GET) that fail to connect, are dropped before an answer, or get
  500/502/503/504 are retried with back-off for about READ_RETRY_SECONDS, so one blip
  of the local agent (restart, leader election) is not an error;
- writes (PUT, DELETE, POST) are never retried: a cas or acquire that reached Consul
  must not be sent twice, so their failures surface at once, as before.
"""

from __future__ import annotations

import contextlib

import consul
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from ..config import Config, ConsulSettings
from ..errors import Unavailable


class ConsulUnavailable(Unavailable):
    """Consul could not be reached or answered with an error; says what to check."""


# requests' own default: no retry, and a read error re-raised as is.
_NO_RETRY = Retry(0, read=False)


class _ReadRetry(Retry):
    """urllib3's Retry for GET only.  Two departures from what Retry does by itself:
    connection errors of other methods are not retried either (a write is sent once,
    whatever happened to it), and a read *timeout* is not retried (the agent already
    had the whole client timeout; a blocking query's wait would be doubled)."""

    def increment(self, method=None, url=None, *args, **kwargs):
        if (method or "").upper() not in self.allowed_methods or isinstance(kwargs.get("error"), ReadTimeoutError):
            return _NO_RETRY.increment(method, url, *args, **kwargs)
        return super().increment(method, url, *args, **kwargs)


# Back-off sleeps 0, 0.5, 1, 2 s: four retries over about 3.5 s.
READ_RETRY_SECONDS = 3.5
READ_RETRY = _ReadRetry(
    total=4,
    connect=4,
    read=4,
    status=4,
    other=0,
    redirect=0,
    allowed_methods=frozenset({"GET"}),
    status_forcelist=(500, 502, 503, 504),
    backoff_factor=0.25,
    backoff_max=2.0,
    raise_on_status=False,  # the last answer goes back to py-consul, which raises as before
    respect_retry_after_header=False,  # a Retry-After: 3600 must not hold a request for an hour
)


def make_client_from(source: Config | ConsulSettings, timeout: float = 10.0, retry_reads: bool = True) -> consul.Consul:
    """A py-consul client for a loaded Config (its consul.* keys, CONSUL_* variables and
    flags, resolved) or for explicit ConsulSettings, with TLS and read retries."""
    s = source.consul_settings if isinstance(source, Config) else source
    host = f"[{s.host}]" if ":" in s.host else s.host  # py-consul pastes host:port into the URL
    client = consul.Consul(
        host=host,
        port=s.port,
        scheme=s.scheme,
        token=s.token,
        verify=s.verify,
        cert=s.cert,
        connections_timeout=timeout,
    )
    # py-consul lets $CONSUL_HTTP_TOKEN override the token it is given; the settings
    # have already applied Consul's precedence (flags > environment > file).
    client.token = s.token
    if s.token:
        # py-consul forgets the token on some reads (agent.self, coordinate.nodes, event.list):
        # under an ACL default-deny policy they would run as anonymous.  A session header
        # carries it on every request; Consul prefers ?token= where py-consul sets one.
        client.http.session.headers["X-Consul-Token"] = s.token
    if retry_reads:
        adapter = HTTPAdapter(max_retries=READ_RETRY)
        client.http.session.mount("http://", adapter)
        client.http.session.mount("https://", adapter)
    return client


def make_client(address: str | None, token: str | None, timeout: float = 10.0) -> consul.Consul:
    """`address` is Consul's `host:port` or `scheme://host:port` (as CONSUL_HTTP_ADDR).
    Kept for callers that have only an address; with a Config, use make_client_from(cfg),
    which also applies consul.token_file and the TLS settings."""
    return make_client_from(ConsulSettings.from_address(address, token), timeout)


def describe(client: consul.Consul) -> str:
    return f"{client.http.base_uri}"


@contextlib.contextmanager
def consul_errors(client: consul.Consul, doing: str):
    """Re-raise transport and server errors as ConsulUnavailable naming what failed."""
    try:
        yield
    except consul.ACLPermissionDenied as exc:  # 403: the agent is up, our token is the problem
        raise ConsulUnavailable(
            f"Consul at {describe(client)} refused {doing}: 403 {exc}. Check the ACL token this agent sends "
            "(consul.token / consul.token_file / CONSUL_HTTP_TOKEN) and its ACL policy (README: Running on a real Consul cluster)."
        ) from exc
    except (requests.exceptions.RequestException, consul.ConsulException) as exc:
        raise ConsulUnavailable(
            f"Consul at {describe(client)} failed while {doing}: {exc.__class__.__name__}: {exc}. "
            "Check that the local Consul agent is running and reachable (consul.address / CONSUL_HTTP_ADDR)."
        ) from exc
