"""tuggle-agent: distribute files inside a Consul cluster."""

__version__ = "0.1.0"
