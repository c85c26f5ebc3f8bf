"""Building the py-consul client and turning its failures into one clear error."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import consul
import requests

from ..errors import Unavailable


class ConsulUnavailable(Unavailable):
    """Consul could not be reached or answered with an error; says what to check."""


def make_client(address: str | None, token: str | None, timeout: float = 10.0) -> consul.Consul:
    """`address` is Consul's `host:port` or `scheme://host:port` (as CONSUL_HTTP_ADDR)."""
    address = address or "127.0.0.1:8500"
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    return consul.Consul(host=parts.hostname or "127.0.0.1", port=parts.port or 8500,
                         scheme=parts.scheme or "http", token=token, connections_timeout=timeout)


def describe(client: consul.Consul) -> str:
    return f"{client.http.base_uri}"


@contextlib.contextmanager
def consul_errors(client: consul.Consul, doing: str):
    """Re-raise transport and server errors as ConsulUnavailable naming what failed."""
    try:
        yield
    except (requests.exceptions.RequestException, consul.ConsulException) as exc:
        raise ConsulUnavailable(
            f"Consul at {describe(client)} failed while {doing}: {exc.__class__.__name__}: {exc}. "
            "Check that the local Consul agent is running and reachable (consul.address / CONSUL_HTTP_ADDR)."
        ) from exc
