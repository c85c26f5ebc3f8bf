"""The web console at /_tuggle/ui: one HTML page and its static files (front/static/,
shipped in the package, no build step), and one read-only JSON API the page polls.

  GET /_tuggle/ui                    the page (hash routes: #/ objects, #/object/<name>, #/nodes)
  GET /_tuggle/ui/static/<path>      index.html, console.js, console.css
  GET /_tuggle/ui/api/objects        every object: holders, targets, state
  GET /_tuggle/ui/api/object/<name>  one object's rollout: a row per node, graph edges
  GET /_tuggle/ui/api/nodes          every tuggle node: health, disk, fetches, orphans

The data comes from engine/console.py; nothing here writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from werkzeug.security import safe_join
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from ..engine.node import Node
from ..errors import NotFound
from ..objects.names import check_name

STATIC = Path(__file__).parent / "static"


class ConsoleUI:
    def __init__(self, node: Node):
        self.node = node  # its .console assembles the data (engine/console.py)

    def page(self, req: Request) -> Response:
        return self._file(req, "index.html")

    def static(self, req: Request, path: str) -> Response:
        return self._file(req, path)

    def _file(self, req: Request, path: str) -> Response:
        full = safe_join(str(STATIC), path)
        if full is None or not Path(full).is_file():
            raise NotFound(f"no console file {path}")
        resp = send_file(full, req.environ, conditional=True, max_age=None)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    def api(self, req: Request, what: str) -> Response:
        if what == "objects":
            data = self.node.console.objects()
        elif what == "nodes":
            data = self.node.console.nodes()
        elif what.startswith("object/"):
            data = self.node.console.object(check_name(what[len("object/") :]))
        else:
            raise NotFound(f"unknown console API /_tuggle/ui/api/{what}: use objects, object/<name> or nodes")
        return Response(json.dumps(data) + "\n", mimetype="application/json", headers={"Cache-Control": "no-store"})
