"""One simulated agent: identity, local services and checks with their
runners, the event buffer, and the config-dir watches that call back into
the agent's HTTP API.

Layering: built on state/ and the base modules; never imports http/. The
HTTP listener an agent serves on is handed to it by the cluster (see
`Agent.bind`), which keeps the endpoint code out of this package's imports.
"""
