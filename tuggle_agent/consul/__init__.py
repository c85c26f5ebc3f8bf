"""tuggle-agent's adapter to Consul, one module per Consul API area (as Consul's Go
`api` package): kv, agent, health, event, session, semaphore.

Everything goes through py-consul and documented Consul semantics, so the same
code runs against a real Consul agent and the embedded dev agent.
"""

from .client import ConsulUnavailable, make_client

__all__ = ["ConsulUnavailable", "make_client"]
