// tuggle web console: vanilla JS, no build step. Polls /_tuggle/ui/api/* every second
// and redraws the current view (hash routes: #/ objects, #/object/<name>, #/nodes).
"use strict";

(function () {
  const API = "/_tuggle/ui/api/";
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const view = document.getElementById("view");
  const updated = document.getElementById("updated");
  const ui = { sortKey: "name", sortDir: 1, filter: "", generation: 0, timer: null, route: null };

  // -- formatting -------------------------------------------------------
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    n = Number(n) || 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function age(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (!isFinite(s)) return "?";
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }
  function stateClass(state) { return "state state-" + String(state).replace(/ /g, "-"); }

  // -- DOM helpers (textContent only: names come from KV, untrusted) ----
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function objectLink(name) { return "#/object/" + encodeURIComponent(name); }

  // -- routing and polling ----------------------------------------------
  function parseRoute() {
    const h = location.hash.replace(/^#/, "") || "/";
    if (h.startsWith("/object/")) return { page: "object", name: decodeURIComponent(h.slice(8)) };
    if (h === "/nodes") return { page: "nodes" };
    return { page: "objects" };
  }
  function apiPath(route) {
    if (route.page === "object") return "object/" + encodeURIComponent(route.name);
    return route.page;
  }

  async function poll() {
    const gen = ui.generation;
    const route = ui.route;
    let data = null;
    try {
      const resp = await fetch(API + apiPath(route), { cache: "no-store" });
      const body = resp.headers.get("Content-Type") === "application/json" ? await resp.json() : await resp.text();
      if (!resp.ok) throw new Error(typeof body === "string" ? body.trim() : "HTTP " + resp.status);
      data = body;
    } catch (err) {
      // The node or the network: shown, and retried at the next poll.
      if (gen === ui.generation) {
        updated.textContent = "error: " + err.message;
        updated.className = "error";
      }
    }
    try {
      // A bug in drawing is not swallowed: it reaches the browser's console.
      if (data !== null && gen === ui.generation) {
        render(route, data);
        updated.textContent = "updated " + new Date().toLocaleTimeString();
        updated.className = "muted";
      }
    } finally {
      if (gen === ui.generation) ui.timer = setTimeout(poll, POLL_MS);
    }
  }

  function navigate() {
    ui.generation++;
    clearTimeout(ui.timer);
    ui.route = parseRoute();
    view.textContent = "";
    view.dataset.page = ui.route.page;
    document.getElementById("nav-objects").className = ui.route.page === "nodes" ? "" : "active";
    document.getElementById("nav-nodes").className = ui.route.page === "nodes" ? "active" : "";
    poll();
  }

  function render(route, data) {
    if (route.page === "objects") renderObjects(data);
    else if (route.page === "object") renderObject(data);
    else renderNodes(data);
  }

  // -- objects table ----------------------------------------------------
  const OBJECT_COLUMNS = [
    { key: "name", title: "Name" },
    { key: "size", title: "Size", num: true },
    { key: "created_at", title: "Age" },
    { key: "sha256", title: "SHA-256" },
    { key: "holders", title: "Holders", num: true },
    { key: "targets", title: "Targets", num: true },
    { key: "state", title: "State" },
  ];

  function sortValue(o, key) {
    if (key === "targets") return o.targets.length;
    if (key === "created_at") return -Date.parse(o.created_at); // ascending age
    return o[key];
  }

  function renderObjects(data) {
    let table = document.getElementById("objects");
    if (!table) {
      const filter = el("input", { id: "filter", type: "search", placeholder: "filter by name", value: ui.filter });
      filter.addEventListener("input", () => { ui.filter = filter.value; renderObjects(ui.lastObjects); });
      const head = el("tr", {}, OBJECT_COLUMNS.map((c) => {
        const th = el("th", { class: "sortable" + (c.num ? " num" : ""), "data-key": c.key, text: c.title });
        th.addEventListener("click", () => {
          ui.sortDir = ui.sortKey === c.key ? -ui.sortDir : 1;
          ui.sortKey = c.key;
          renderObjects(ui.lastObjects);
        });
        return th;
      }));
      table = el("table", { id: "objects" }, [el("thead", {}, [head]), el("tbody", {})]);
      view.append(el("h1", { text: "Objects" }), filter, table, el("p", { id: "objects-summary", class: "muted" }));
    }
    ui.lastObjects = data;
    for (const th of table.querySelectorAll("th")) {
      const on = th.dataset.key === ui.sortKey;
      th.classList.toggle("sorted-asc", on && ui.sortDir > 0);
      th.classList.toggle("sorted-desc", on && ui.sortDir < 0);
    }
    const needle = ui.filter.toLowerCase();
    const rows = data.objects.filter((o) => o.name.toLowerCase().includes(needle));
    rows.sort((a, b) => {
      const x = sortValue(a, ui.sortKey), y = sortValue(b, ui.sortKey);
      return (x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1) * ui.sortDir;
    });
    const tbody = el("tbody", {}, rows.map((o) => el("tr", { "data-name": o.name }, [
      el("td", { class: "name" }, [el("a", { href: objectLink(o.name), text: o.name })]),
      el("td", { class: "size num", title: o.size + " bytes", text: bytes(o.size) }),
      el("td", { class: "age", title: o.created_at, text: age(o.created_at) }),
      el("td", { class: "sha", title: o.sha256 }, [el("code", { text: String(o.sha256).slice(0, 12) })]),
      el("td", { class: "holders num", title: o.holder_nodes.join(", "), text: String(o.holders) }),
      el("td", { class: "targets num", title: o.targets.join(", "),
        text: o.targets.length ? o.complete_targets + " / " + o.targets.length : "—" }),
      el("td", { class: "state" }, [el("span", { class: stateClass(o.state), text: o.state })]),
    ])));
    table.replaceChild(tbody, table.tBodies[0]);
    document.getElementById("objects-summary").textContent =
      rows.length + " of " + data.objects.length + " objects, " + data.nodes + " tuggle nodes" +
      (data.bad_entries ? ", " + data.bad_entries + " malformed KV entries" : "");
  }

  // -- one object -------------------------------------------------------
  function renderObject(o) {
    view.textContent = "";
    const meta = el("table", { class: "meta" }, [
      ["size", bytes(o.size) + " (" + o.size + " bytes)"],
      ["created", o.created_at + " (" + age(o.created_at) + " ago)"],
      ["sha256", o.sha256],
      ["version", o.version],
      ["sync", o.sync ? "requested " + o.sync.requested_at : "none"],
      ["state", o.state],
      ["complete", o.complete + " nodes" + (o.targets.length ? ", " + o.complete_targets + " / " + o.targets.length + " targets" : "")],
    ].map(([k, v]) => el("tr", {}, [el("td", { text: k }), el("td", { class: "meta-" + k, text: v })])));
    const rows = o.nodes.map((r) => {
      const pct = o.size ? Math.min(100, (100 * r.bytes_verified) / o.size) : 100;
      return el("tr", { "data-node": r.node, "data-state": r.state }, [
        el("td", { class: "node", text: r.node }),
        el("td", { class: "state" }, [el("span", { class: stateClass(r.state), text: r.state })]),
        el("td", { class: "bytes", "data-bytes": String(r.bytes_verified) }, [
          el("span", { class: "bar" }, [el("span", { style: "width:" + pct.toFixed(1) + "%" })]),
          bytes(r.bytes_verified) + " / " + bytes(o.size),
        ]),
        el("td", { class: "rate num", text: r.state === "fetching" ? bytes(r.rate) + "/s" : "" }),
        el("td", { class: "source", text: r.source === r.node ? "(stored here)" : r.source }),
        el("td", { class: "detail muted", text: r.detail + (r.passing ? "" : " (not passing)") }),
      ]);
    });
    const table = el("table", { id: "object-nodes" }, [
      el("thead", {}, [el("tr", {}, ["Node", "State", "Bytes verified", "Rate", "Source", "Detail"].map((t) => el("th", { text: t })))]),
      el("tbody", {}, rows),
    ]);
    view.append(
      el("h1", {}, [el("a", { href: "#/", text: "Objects" }), " / ", el("span", { id: "object-name", text: o.name })]),
      meta, el("h2", { text: "Nodes" }), table,
      el("h2", { text: "Who fetched from whom" }), drawGraph(o),
      el("p", { class: "muted", text: o.edges.length + " completed fetches (solid); dashed: running" }),
    );
  }

  function drawGraph(o) {
    // Solid: completed fetches (KV graph edges); dashed: fetches running now (source -> node).
    const edges = o.edges.map((e) => ({ from: e.from, to: e.to, live: false, label: e.elapsed.toFixed(2) + "s" }));
    for (const r of o.nodes) {
      if (r.state === "fetching" && r.source) edges.push({ from: r.source, to: r.node, live: true, label: "" });
    }
    const names = [];
    const add = (n) => { if (!names.includes(n)) names.push(n); };
    for (const e of edges) { add(e.from); add(e.to); }
    for (const n of o.holder_nodes) add(n);
    names.sort();
    // Layers: a node sits one column right of its deepest source (bounded: planted edges may loop).
    const depth = Object.fromEntries(names.map((n) => [n, 0]));
    for (let i = 0; i < names.length; i++) {
      for (const e of edges) depth[e.to] = Math.max(depth[e.to], Math.min(depth[e.from] + 1, names.length));
    }
    const rowsUsed = {};
    const pos = {};
    const W = 110, H = 28;
    for (const n of names) {
      const d = depth[n];
      const row = rowsUsed[d] = (rowsUsed[d] || 0) + 1;
      pos[n] = { x: 20 + d * 190, y: 20 + (row - 1) * 56 };
    }
    const width = 40 + (Math.max(0, ...Object.values(depth)) + 1) * 190;
    const height = 40 + Math.max(1, ...Object.values(rowsUsed)) * 56;
    const root = svg("svg", { id: "graph", width: String(width), height: String(height), "data-edges": String(o.edges.length) });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#455a64" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    for (const e of edges) {
      const a = pos[e.from], b = pos[e.to];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const back = x2 <= x1; // same column or a planted loop: draw across the boxes
      root.appendChild(svg("line", {
        class: e.live ? "live" : "done", "data-from": e.from, "data-to": e.to,
        x1: String(back ? a.x + W / 2 : x1), y1: String(back ? a.y + H : y1),
        x2: String(back ? b.x + W / 2 : x2), y2: String(back ? b.y : y2), "marker-end": "url(#arrow)",
      }));
      if (e.label) {
        root.appendChild(svg("text", { class: "label", x: String((x1 + x2) / 2 - 12), y: String((y1 + y2) / 2 - 4) }, e.label));
      }
    }
    for (const n of names) {
      const g = svg("g", { class: "node", "data-node": n });
      g.appendChild(svg("rect", { x: String(pos[n].x), y: String(pos[n].y), width: String(W), height: String(H), rx: "4" }));
      g.appendChild(svg("text", { x: String(pos[n].x + 8), y: String(pos[n].y + 18) }, n));
      root.appendChild(g);
    }
    return root;
  }

  // -- nodes ------------------------------------------------------------
  function renderNodes(data) {
    view.textContent = "";
    const rows = data.nodes.map((n) => {
      // used of the node's cache.max_disk (its eviction limit), as /_tuggle/status reports it
      const disk = n.disk && n.disk.max ? bytes(n.disk.used) + " / " + bytes(n.disk.max) +
        " (" + Math.round((100 * n.disk.used) / n.disk.max) + "%)" : "—";
      const failing = n.checks.filter((c) => c.status !== "passing").map((c) => c.name + ": " + c.status);
      return el("tr", { "data-node": n.node }, [
        el("td", { class: "node" }, [el("a", { href: n.url + "/_tuggle/status", text: n.node })]),
        el("td", { class: "health" }, [el("span", { class: stateClass(n.passing ? "complete" : "down"),
          title: failing.join("\n"), text: n.passing ? "passing" : "failing" })]),
        el("td", { class: "objects num", text: String(n.holds) }),
        el("td", { class: "disk", text: disk }),
        el("td", { class: "fetches", text: n.fetching.length ? n.fetching.length + ": " +
          n.fetching.map((f) => f.name + " " + Math.floor((100 * f.verified) / Math.max(1, f.size)) + "%").join(", ") : "0" }),
        el("td", { class: "orphans num", text: String(n.orphans) }),
        el("td", { class: "detail muted", text: n.answered ? (n.fetch_only ? "fetch-only" : "") : n.error }),
      ]);
    });
    view.append(el("h1", { text: "Nodes" }), el("table", { id: "nodes" }, [
      el("thead", {}, [el("tr", {}, ["Node", "Health", "Holds", "Disk", "Active fetches", "Orphans", ""].map((t) => el("th", { text: t })))]),
      el("tbody", {}, rows),
    ]));
  }

  window.addEventListener("hashchange", navigate);
  navigate();
})();
