"""What the dev agent says it is: one datacenter, one Consul version.

Both show up in catalog rows, agent/self and member tags; keeping them here
lets every layer use them without importing any other part of the agent.
"""

DATACENTER = "dc1"
CONSUL_VERSION = "1.22.0"
