"""Who fetched from whom: the KV graph edges as Graphviz DOT, optionally rendered by `dot`.
A source a fetch switched away from is a dashed edge labelled with the reason."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

from ..objects.edges import Edge

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}


class DotMissing(RuntimeError):
    pass


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(name: str, edges: list[Edge]) -> str:
    lines = [f"digraph {_q(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for node in sorted({e.source for e in edges} | {e.target for e in edges}):
        lines.append(f"  {_q(node)};")
    for e in sorted(edges, key=lambda e: e.end):
        end = datetime.fromtimestamp(e.end, UTC).strftime("%H:%M:%S")
        label = f"{e.elapsed:.2f}s" + r"\n" + end  # DOT's own line break inside the label
        if e.left_because is None:
            lines.append(f'  {_q(e.source)} -> {_q(e.target)} [label="{label}"];')
        else:  # a source the fetch switched away from: dashed, with the reason
            label = f"left: {e.left_because}" + r"\n" + label
            lines.append(f'  {_q(e.source)} -> {_q(e.target)} [label="{label}", style=dashed];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot: str, fmt: str, timeout: float = 30.0) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise DotMissing(
            "rendering needs Graphviz's `dot` program, which is not installed on this node "
            "(install the graphviz package, or ask for the DOT source without &format=)"
        )
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout
