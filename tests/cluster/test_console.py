"""The web console (/_tuggle/ui) in a real headless browser: Debian's chromium driven by
selenium, against a 3-node cluster with Consul watches (so `?sync` rolls out) and
rate-limited fetches on node2 and node3 (so a rollout lasts long enough to watch).

Every test fails on any SEVERE entry of the browser's console log (JavaScript errors,
failed requests) and saves a screenshot under its tmp dir.
"""

import os
import tempfile
from pathlib import Path

import pytest
import requests

from tuggle_agent.harness import TuggleCluster, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="the console tests need Debian's chromium and chromium-driver (/usr/bin/chromium, "
    "/usr/bin/chromedriver): apt-get install -y chromium chromium-driver (CI and `make test` install them)",
)

MiB = 2**20
ROLL_OUT_BYTES = 3 * MiB
RATE = "512KiB"  # node2 and node3: a 3 MiB rollout takes ~6 s, several polls of the page


@pytest.fixture(scope="module")
def console_cluster(tmp_path_factory):
    with TuggleCluster(
        tmp_path_factory.mktemp("console"),
        nodes=3,
        watches=True,
        per_node={"node2": {"fetch_rate": RATE}, "node3": {"fetch_rate": RATE}},
    ) as c:
        yield c


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile.name}",
        "--window-size=1200,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


@pytest.fixture
def page(browser, tmp_path):
    """The browser, checked after the test: no JavaScript error, a screenshot saved."""
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    shot = tmp_path / "console.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, f"JavaScript console errors: {severe}"


def open_console(driver, agent, route: str = "/") -> None:
    driver.get(f"{agent.url}/_tuggle/ui#{route}")


def objects_rows(driver) -> dict[str, dict]:
    """The objects table as the browser shows it, read in one go (the page redraws every second)."""
    rows = driver.execute_script(
        """return [...document.querySelectorAll('#objects tbody tr')].map(tr => ({
             name: tr.dataset.name,
             holders: tr.querySelector('td.holders').textContent,
             targets: tr.querySelector('td.targets').textContent,
             state: tr.querySelector('td.state').textContent,
             size: tr.querySelector('td.size').textContent}))"""
    )
    return {r["name"]: r for r in rows or []}


def objects_order(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#objects tbody tr')].map(tr => tr.dataset.name)"
    )


def node_rows(driver) -> dict[str, dict]:
    rows = driver.execute_script(
        """return [...document.querySelectorAll('#object-nodes tbody tr')].map(tr => ({
             node: tr.dataset.node, state: tr.dataset.state,
             bytes: tr.querySelector('td.bytes').textContent,
             verified: Number(tr.querySelector('td.bytes').dataset.bytes),
             rate: tr.querySelector('td.rate').textContent,
             source: tr.querySelector('td.source').textContent}))"""
    )
    return {r["node"]: r for r in rows or []}


def graph(driver) -> dict:
    return driver.execute_script(
        """const g = document.querySelector('svg#graph');
           if (!g) return {done: 0, live: 0, lines: 0, labels: [], pairs: []};
           return {done: g.querySelectorAll('line.done').length,
                   live: g.querySelectorAll('line.live').length,
                   lines: g.querySelectorAll('line, path:not(marker path)').length,
                   labels: [...g.querySelectorAll('g.node text')].map(t => t.textContent),
                   pairs: [...g.querySelectorAll('line.done')].map(l => l.dataset.from + '>' + l.dataset.to)}"""
    )


def test_objects_table_shows_a_new_object_with_its_holders(console_cluster, page, unique_name):
    c = console_cluster
    small, big = unique_name("small"), unique_name("big")
    assert c[0].put(small, b"x" * 1000).status_code == 201
    assert c[0].put(big, os.urandom(300_000)).status_code == 201
    open_console(page, c[1])  # any node shows the whole cluster
    rows = wait_until(
        lambda: (r := objects_rows(page)) and small in r and big in r and r,
        timeout=10,
        what="both objects in the console's table",
    )
    assert rows[small]["holders"] == "1" and rows[small]["state"] == "complete"
    assert rows[small]["targets"] == "—"  # no ?sync: nobody is asked to prefetch
    assert rows[big]["size"] == "293.0 KiB"

    # node2 fetches it: two holders, shown without a reload.
    assert c[1].get(big).status_code == 200
    wait_until(lambda: objects_rows(page)[big]["holders"] == "2", timeout=10, what="2 holders of the fetched object")

    # Sorted by clicking a header (again: reversed), filtered by name.
    page.find_element("css selector", "th[data-key=size]").click()
    order = objects_order(page)
    assert order.index(small) < order.index(big)
    page.find_element("css selector", "th[data-key=size]").click()
    order = objects_order(page)
    assert order.index(big) < order.index(small)
    page.find_element("id", "filter").send_keys(small)
    wait_until(lambda: objects_order(page) == [small], timeout=5, what="only the filtered object")
    # The filter survives the next poll.
    wait_until(lambda: page.find_element("id", "updated").text.startswith("updated"), timeout=5)
    assert objects_order(page) == [small]


def test_sync_rollout_is_live_on_the_object_page(console_cluster, page, unique_name):
    c = console_cluster
    name = unique_name()
    assert c[0].put(name, os.urandom(ROLL_OUT_BYTES), params={"sync": ""}).status_code == 201
    open_console(page, c[0], f"/object/{name}")

    # Progress: a fetching node's verified bytes change between two reads of the page.
    first = wait_until(
        lambda: next(((n, r) for n, r in node_rows(page).items() if r["state"] == "fetching" and r["verified"]), None),
        timeout=15,
        what="a node fetching with bytes verified",
    )
    node, row = first
    later = wait_until(
        lambda: (r := node_rows(page)[node])["bytes"] != row["bytes"] and r,
        timeout=10,
        what=f"{node}'s verified bytes to change",
    )
    assert later["verified"] > row["verified"]
    # While the rollout runs, the graph draws the running fetch (dashed, source -> node).
    wait_until(lambda: graph(page)["live"] >= 1, timeout=10, what="a running fetch in the graph")
    assert any(r["rate"].endswith("/s") for r in node_rows(page).values() if r["state"] == "fetching")

    rows = wait_until(
        lambda: (r := node_rows(page)) and all(x["state"] == "complete" for x in r.values()) and r,
        timeout=60,
        what="every node complete",
    )
    assert set(rows) == {"node1", "node2", "node3"}
    assert all(r["verified"] == ROLL_OUT_BYTES for r in rows.values())

    # The graph: one line per edge KV holds, every node labelled.
    edges = requests.get(f"{c[0].url}/{name}?graph", timeout=5).text
    n_edges = edges.count("->")
    assert n_edges == 2
    g = wait_until(lambda: (g := graph(page))["done"] >= n_edges and g, timeout=10, what="the edges drawn")
    assert g["lines"] >= n_edges
    assert {"node1", "node2", "node3"} <= set(g["labels"])
    for pair in g["pairs"]:
        src, dst = pair.split(">")
        assert f'"{src}" -> "{dst}"' in edges
    assert page.find_element("css selector", "td.meta-state").text == "complete"


def test_nodes_page_lists_every_node_with_health_and_disk(console_cluster, page):
    c = console_cluster
    open_console(page, c[2], "/nodes")
    rows = wait_until(
        lambda: page.execute_script(
            """return [...document.querySelectorAll('#nodes tbody tr')].map(tr => [tr.dataset.node,
                 tr.querySelector('td.health').textContent, tr.querySelector('td.disk').textContent,
                 tr.querySelector('td.orphans').textContent])"""
        ),
        timeout=10,
        what="the nodes table",
    )
    assert [r[0] for r in rows] == ["node1", "node2", "node3"]
    assert all(r[1] == "passing" and "iB" in r[2] and r[3] == "0" for r in rows)


def test_console_api_is_read_only_and_static_files_ship(console_cluster):
    url = console_cluster[0].url
    # GET only: a POST falls through to the unknown control endpoint.
    assert requests.post(f"{url}/_tuggle/ui/api/objects", timeout=5).status_code in (404, 405)
    assert requests.get(f"{url}/_tuggle/ui/api/nope", timeout=5).status_code == 404
    assert requests.get(f"{url}/_tuggle/ui/api/object/no-such-object", timeout=5).status_code == 404
    assert requests.get(f"{url}/_tuggle/ui/static/../app.py", timeout=5).status_code == 404
    for page in ("/_tuggle/ui", "/_tuggle/ui/"):
        r = requests.get(url + page, timeout=5, allow_redirects=False)
        assert r.status_code == 200 and "console.js" in r.text
    js = requests.get(f"{url}/_tuggle/ui/static/console.js", timeout=5)
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
