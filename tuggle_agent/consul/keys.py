"""The whole KV key layout of one namespace, in one place.

  <ns>/<name>                          object metadata (JSON; the Go tuggle's fields + ours)
  <ns>.pieces/<name>/<version>         piece digests, written before the metadata
  <ns>.tombstones/<name>/<version>     an explicit DELETE of that version (kept tombstone_ttl):
                                       the only evidence on which a node removes its copy
  <ns>.graph/<name>/<from>/<to>        one edge per completed fetch
  <ns>.holders/<name>/<version>/<node> complete holders: {"address", "port"} (JSON), locked by the
                                       node's holder session (checks: serfHealth and the node's
                                       tuggle service check; behaviour delete), so a dead or
                                       failing node's keys vanish: "passing holder" = a held key
  <ns>.relay/<name>/<version>/<node>   partial holders, {"address", "port"} (JSON), locked by
                                       their fetch session
  <ns>.nudge/<name>/<version>/<node>   "look at the relay entries again": written by a fetcher that
                                       skips that slow partial holder (or by one that sank, for nodes
                                       that may pull from it); the nudged node removes it when done
  <ns>.lock/<node>                     each source node's fetch semaphore (Go api.Semaphore)
  <ns>.status/<name>/<version>/<node>  a node's failed post_download hook of that version (JSON)
  <ns>.nodes/<node>                    every node that ever served (so ?status can say "down"
                                       for a node whose service is deregistered)
  <ns>.changes                         the change-log: the last changes of `<ns>/` (objects/changelog.py)

Nodes watch `<ns>.changes` (a `key` watch; `kv_watch: keyprefix` watches all of `<ns>/`
instead): every other prefix is kept apart so that bookkeeping writes (edges, relay
entries, semaphores) never wake every node's watch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    ns: str

    @property
    def meta_prefix(self) -> str:
        return f"{self.ns}/"

    def meta(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def name_of(self, key: str) -> str:
        """The object name of a metadata key (its last path component)."""
        return key[len(self.meta_prefix) :] if key.startswith(self.meta_prefix) else key.rsplit("/", 1)[-1]

    def pieces(self, name: str, version: str) -> str:
        return f"{self.ns}.pieces/{name}/{version}"

    def pieces_prefix(self, name: str) -> str:
        return f"{self.ns}.pieces/{name}/"

    @property
    def changes(self) -> str:
        return f"{self.ns}.changes"

    @property
    def tombstones_prefix(self) -> str:
        return f"{self.ns}.tombstones/"

    def tombstones_of(self, name: str) -> str:
        return f"{self.ns}.tombstones/{name}/"

    def tombstone(self, name: str, version: str) -> str:
        return f"{self.ns}.tombstones/{name}/{version}"

    def graph_prefix(self, name: str) -> str:
        return f"{self.ns}.graph/{name}/"

    def graph_edge(self, name: str, source: str, target: str) -> str:
        return f"{self.ns}.graph/{name}/{source}/{target}"

    @property
    def holders_root(self) -> str:
        return f"{self.ns}.holders/"

    def holders_prefix(self, name: str, version: str | None = None) -> str:
        return f"{self.ns}.holders/{name}/" + (f"{version}/" if version else "")

    def holder(self, name: str, version: str, node: str) -> str:
        return f"{self.ns}.holders/{name}/{version}/{node}"

    def relay_prefix(self, name: str, version: str | None = None) -> str:
        return f"{self.ns}.relay/{name}/" + (f"{version}/" if version else "")

    def relay(self, name: str, version: str, node: str) -> str:
        return f"{self.ns}.relay/{name}/{version}/{node}"

    def nudge_prefix(self, name: str) -> str:
        return f"{self.ns}.nudge/{name}/"

    def nudge(self, name: str, version: str, node: str) -> str:
        return f"{self.ns}.nudge/{name}/{version}/{node}"

    def status_prefix(self, name: str, version: str | None = None) -> str:
        return f"{self.ns}.status/{name}/" + (f"{version}/" if version else "")

    def status(self, name: str, version: str, node: str) -> str:
        return f"{self.ns}.status/{name}/{version}/{node}"

    @property
    def members_prefix(self) -> str:
        return f"{self.ns}.nodes/"

    def member(self, node: str) -> str:
        return f"{self.ns}.nodes/{node}"

    def lock(self, node: str) -> str:
        return f"{self.ns}.lock/{node}"
