"""The Consul HTTP API over the dev agent: request parsing, one module of
endpoints per API area, and the listener that routes requests to them.

Layering: the top of the dev agent; endpoints read and change state through
node/ and state/, which never import anything from here.
"""
