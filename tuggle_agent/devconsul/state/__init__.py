"""The servers' replicated state: the store and its blocking queries, KV,
sessions, catalog, coordinates, user events, ACL policies and tokens, and
the service/check data model.

Layering: modules here import each other and the base modules (codec,
errors, timers, timings, version) only -- never the agents (node/) or the
HTTP endpoints (http/) built on top of them. tests/devconsul/test_layering.py
holds every module to that.
"""
