"""Logs an operator can use: JSON lines with the access-log fields, a handle-event log
that rotates instead of growing, upload progress with rate and ETA."""

import json
import logging

import pytest

from tuggle_agent.cli import handle_event
from tuggle_agent.cli.options import log_formatter
from tuggle_agent.config import load_config
from tuggle_agent.engine.progress import Progress


def _record(msg="GET /a 200 5B 0.010s 10.0.0.7 client", **extra) -> logging.LogRecord:
    record = logging.LogRecord("tuggle_agent.access", logging.INFO, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_lines_carry_time_level_logger_message_and_access_fields():
    fields = {"method": "GET", "path": "/a", "status": 200, "bytes": 5, "duration": 0.01}
    fields |= {"client": "10.0.0.7", "internal": False, "route": "object"}
    line = log_formatter("json").format(_record(**fields))
    data = json.loads(line)
    assert "\n" not in line
    assert data["level"] == "INFO" and data["logger"] == "tuggle_agent.access"
    assert data["message"] == "GET /a 200 5B 0.010s 10.0.0.7 client"
    assert data["time"][:2] == "20"
    assert {k: data[k] for k in fields} == fields


def test_text_lines_stay_one_line_per_record():
    line = log_formatter("text").format(_record())
    assert line.endswith("INFO tuggle_agent.access: GET /a 200 5B 0.010s 10.0.0.7 client")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_log_format_setting(tmp_path):
    assert load_config(None, {"data_dir": str(tmp_path)}, env={}).log_format == "text"
    assert load_config(None, {"data_dir": str(tmp_path), "log_format": "json"}, env={}).log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        load_config(None, {"data_dir": str(tmp_path), "log_format": "xml"}, env={})


def test_handle_event_log_rotates_instead_of_growing(tmp_path):
    cfg = load_config(None, {"data_dir": str(tmp_path)}, env={})
    handler = handle_event._log_to_data_dir(cfg)
    log = logging.getLogger("tuggle_agent.cli.handle_event")
    try:
        line = "x" * 1000
        for _ in range(6 * handle_event.LOG_MAX_BYTES // 1000):  # 6 MiB written in all
            log.warning(line)
    finally:
        logging.getLogger("tuggle_agent").removeHandler(handler)
        handler.close()
    files = sorted(p.name for p in (tmp_path / ".tuggle").iterdir())
    assert files == ["handle-event.log", "handle-event.log.1", "handle-event.log.2", "handle-event.log.3"]
    for p in (tmp_path / ".tuggle").iterdir():
        assert p.stat().st_size <= handle_event.LOG_MAX_BYTES


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_progress_lines_show_rate_and_eta(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("tuggle_agent.engine.progress.time.monotonic", lambda: clock[0])
    log = logging.getLogger("test.progress")
    log.setLevel(logging.INFO)
    lines = _Lines()
    log.addHandler(lines)
    try:
        p = Progress(log, "receiving big.tar.gz", 100 * 2**20, interval=5)
        clock[0] += 1
        p.update(10 * 2**20)  # within the interval: nothing
        clock[0] += 4
        p.update(50 * 2**20)  # 50 MiB in 5 s: 10 MiB/s, 50 MiB to go: 5 s
        unknown = Progress(log, "receiving chunked", None, interval=5)
        clock[0] += 5
        unknown.update(20 * 2**20)
    finally:
        log.removeHandler(lines)
    assert lines.lines == [
        "receiving big.tar.gz: 50.0 MiB of 100.0 MiB (50%), 10.0 MiB/s, ETA 5s",
        "receiving chunked: 20.0 MiB so far (size not announced), 4.0 MiB/s",
    ]
