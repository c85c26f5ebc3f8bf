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

    def __init__(
        self, client: consul.Consul, name: str, ttl: float, behavior: str = "delete", checks: list[str] | None = None
    ):
        self.c = client
        with consul_errors(client, f"creating session {name!r}"):
            self.id = self._create(name, ttl, behavior, checks)
        self._ttl = ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"renew-{self.id[:8]}", daemon=True)
        self._thread.start()

    def _create(self, name: str, ttl: float, behavior: str, checks: list[str] | None) -> str:
        """Tie the session to our own service check too when we can: if this process dies,
        Consul then frees what the session holds after one check interval, not 2 x TTL."""
        if checks:
            try:
                return self.c.session.create(name=name, ttl=int(ttl), behavior=behavior, lock_delay=0, checks=checks)
            except consul.ConsulException as exc:
                log.debug("session with checks %s refused (%s); using the node check only", checks, exc)
        return self.c.session.create(name=name, ttl=int(ttl), behavior=behavior, lock_delay=0)

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
