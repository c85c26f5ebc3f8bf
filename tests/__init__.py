"""tuggle-agent's tests: unit/ (pure logic, seconds), cluster/ (real processes over real
HTTP, through tuggle_agent.harness) and devconsul/ (the embedded Consul dev agent)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: shipped config/, consul.d/, hooks/
