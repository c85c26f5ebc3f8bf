"""Check runners: the dev agent really probes HTTP/TCP endpoints, runs check
scripts and expires TTL checks, reporting results as Consul formats them."""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    from ..state.structs import CheckDef
    from ..timers import Scheduler, Timer
    from ..timings import Timings

Report = Callable[[str, str], None]  # (status, output)
OUTPUT_MAX = 4096
SCRIPT_TIMEOUT = 30.0
USER_AGENT = "Consul Health Check"
MAX_REDIRECTS = 10


def status_for_http(code: int) -> str:
    if 200 <= code < 300:
        return "passing"
    return "warning" if code == 429 else "critical"


class StatusGate:
    """SuccessBeforePassing / FailuresBeforeWarning / FailuresBeforeCritical:
    a result only becomes the check's status after enough consecutive ones
    (Consul's StatusHandler); None means "keep the current status"."""

    def __init__(self, check: CheckDef):
        self.check = check
        self.successes = 0
        self.failures = 0

    def filter(self, status: str) -> str | None:
        check = self.check
        if status != "critical":
            self.successes, self.failures = self.successes + 1, 0
            return status if self.successes >= check.success_before_passing else None
        self.successes, self.failures = 0, self.failures + 1
        if self.failures >= check.failures_before_critical:
            return "critical"
        if check.failures_before_warning and self.failures >= check.failures_before_warning:
            return "warning"
        return None


class IntervalCheck:
    """Runs `probe()` every interval on its own thread; the first run comes
    after a random fraction of the interval (Consul's RandomStagger)."""

    def __init__(self, check: CheckDef, report: Report, timings: Timings):
        self.check = check
        self.report = report
        self.interval = max(check.interval, timings.check_min_interval)
        self.timeout = check.timeout if check.timeout > 0 else timings.check_default_timeout
        self.stagger = timings.check_stagger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"check-{check.check_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = random.uniform(0, self.interval) if self.stagger else 0.0
        gate = StatusGate(self.check)
        while not self._stop.wait(delay):
            result, output = self.probe()
            status = gate.filter(result)
            if status and not self._stop.is_set():
                self.report(status, output)
            delay = self.interval

    def probe(self) -> tuple[str, str]:
        raise NotImplementedError


class HTTPCheck(IntervalCheck):
    def probe(self) -> tuple[str, str]:
        check = self.check
        method = check.method or "GET"
        url = urlsplit(check.http)
        headers = {"User-Agent": USER_AGENT, "Accept": "text/plain, text/*, */*", "Connection": "close"}
        for name, values in check.header.items():
            headers[name] = ", ".join(values)
        go_method = method[:1].upper() + method[1:].lower()
        try:
            resp, body = self._fetch(url, method, headers)
        except TimeoutError:
            return (
                "critical",
                f'{go_method} "{check.http}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
            )
        except ConnectionRefusedError:
            return "critical", f'{go_method} "{check.http}": dial tcp {url.netloc}: connect: connection refused'
        except ConnectionResetError:
            return "critical", f'{go_method} "{check.http}": read tcp {url.netloc}: read: connection reset by peer'
        except (OSError, http.client.HTTPException) as err:
            return "critical", f'{go_method} "{check.http}": {err}'
        output = f"HTTP {method} {check.http}: {resp.status} {resp.reason} Output: {body.decode('utf-8', 'replace')}"
        return status_for_http(resp.status), output

    def _fetch(self, url, method: str, headers: dict) -> tuple[http.client.HTTPResponse, bytes]:
        """One probe; redirects are followed (at most 10) as Go's client does."""
        for _ in range(MAX_REDIRECTS + 1):
            conn = self._connect(url)
            try:
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                conn.request(method, path, self.check.body or None, headers)
                resp = conn.getresponse()
                body = resp.read(OUTPUT_MAX)
            finally:
                conn.close()
            location = resp.getheader("Location")
            if self.check.disable_redirects or resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp, body
            url = urlsplit(urljoin(url.geturl(), location))
            if resp.status in (301, 302, 303) and method != "HEAD":
                method = "GET"
        raise http.client.HTTPException("stopped after 10 redirects")

    def _connect(self, url) -> http.client.HTTPConnection:
        if url.scheme == "https":
            context = ssl.create_default_context()
            if self.check.tls_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(url.hostname, url.port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(url.hostname, url.port, timeout=self.timeout)


class TCPCheck(IntervalCheck):
    def probe(self) -> tuple[str, str]:
        host, _, port = self.check.tcp.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout):
                pass
        except ConnectionRefusedError:
            return "critical", f"dial tcp {self.check.tcp}: connect: connection refused"
        except (OSError, ValueError) as err:
            return "critical", f"dial tcp {self.check.tcp}: {err}"
        return "passing", f"TCP connect {self.check.tcp}: Success"


class ScriptCheck(IntervalCheck):
    """Exit 0 passing, 1 warning, anything else critical (Consul's rule)."""

    def probe(self) -> tuple[str, str]:
        timeout = self.check.timeout or SCRIPT_TIMEOUT
        try:
            done = subprocess.run(
                self.check.args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return "critical", f"Timed out ({timeout}s) running check"
        except OSError as err:
            return "critical", f"Check failed to run: {err}"
        output = (done.stdout + done.stderr)[-OUTPUT_MAX:].decode("utf-8", "replace")
        status = {0: "passing", 1: "warning"}.get(done.returncode, "critical")
        return status, output


class TTLCheck:
    """Critical unless updated within its TTL; updates come from the API."""

    def __init__(self, check: CheckDef, report: Report, scheduler: Scheduler):
        self.check = check
        self.report = report
        self.scheduler = scheduler
        self._timer: Timer | None = None
        self._last_output = ""
        self._lock = threading.Lock()

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
                self._timer = None

    def set_status(self, status: str, output: str) -> None:
        with self._lock:
            self._last_output = output
        self._arm()
        self.report(status, output)

    def _arm(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
            timer = self.scheduler.call_later(self.check.ttl, lambda: self._expire(timer))
            self._timer = timer

    def _expire(self, timer: Timer) -> None:
        with self._lock:
            if timer is not self._timer:
                return
            output = "TTL expired"
            if self._last_output:
                output += f" (last output before timeout follows): {self._last_output}"
        self.report("critical", output)


def make_runner(
    check: CheckDef, report: Report, timings: Timings, scheduler: Scheduler
) -> IntervalCheck | TTLCheck | None:
    """The runner for a check definition, or None for status-only checks."""
    if check.kind == "ttl":
        return TTLCheck(check, report, scheduler)
    runner = {"http": HTTPCheck, "tcp": TCPCheck, "script": ScriptCheck}.get(check.kind)
    return runner(check, report, timings) if runner else None
