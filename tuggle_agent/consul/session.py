"""Consul sessions with a renewing thread, as the Go api's RenewPeriodic does."""

from __future__ import annotations

import logging
import threading

import consul
import requests

from .client import consul_errors

log = logging.getLogger(__name__)


class RenewedSession:
    """A TTL session renewed every TTL/2 until closed; if this process dies the
    session expires (2 x TTL) and Consul applies its behaviour to the keys it held."""

    def __init__(self, client: consul.Consul, name: str, ttl: float, behavior: str = "delete"):
        self.c = client
        with consul_errors(client, f"creating session {name!r}"):
            self.id = client.session.create(name=name, ttl=int(ttl), behavior=behavior, lock_delay=0)
        self._ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"renew-{self.id[:8]}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._ttl / 2):
            try:
                self.c.session.renew(self.id)
            except consul.NotFound:
                log.warning("session %s expired before renewal; its locks are gone", self.id)
                return
            except (requests.exceptions.RequestException, consul.ConsulException) as exc:
                log.warning("renewing session %s failed (%s); retrying", self.id, exc)

    def close(self) -> None:
        self._stop.set()
        try:
            self.c.session.destroy(self.id)
        except (requests.exceptions.RequestException, consul.ConsulException) as exc:
            log.warning("destroying session %s failed (%s); it expires by its TTL", self.id, exc)
