"""Command-line errors and event payloads: small contracts operators and Consul rely on."""

import subprocess

from tuggle_agent.harness import agent_command
from tuggle_agent.objects.events import parse, payload
from tuggle_agent.objects.names import object_id

def run(*args, **kw):
    return subprocess.run(agent_command(*args), capture_output=True, text=True, timeout=30, **kw)


def test_bad_flags_exit_nonzero_naming_the_key(tmp_path):
    p = run("serve", "--data-dir", str(tmp_path), "--fetch-rate", "fast")
    assert p.returncode == 2 and "fetch_rate" in p.stderr and "50MB" in p.stderr
    cfg = tmp_path / "t.yaml"
    cfg.write_text("fetch_timeout: forever\n")
    p = run("serve", "--config", str(cfg))
    assert p.returncode == 2 and "fetch_timeout" in p.stderr


def test_consul_unreachable_at_start_says_what_to_check(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'data'}\nconsul: {{address: '127.0.0.1:1', start_timeout: 1s}}\n")
    p = run("serve", "--config", str(cfg))
    assert p.returncode == 1
    assert "127.0.0.1:1" in p.stderr and "CONSUL_HTTP_ADDR" in p.stderr


def test_event_payload_fits_consuls_100_byte_cap_for_any_valid_name():
    name = "a" * 255
    raw = payload("DELETE", "f" * 32, object_id(name))
    assert len(raw) < 100
    ev = parse({"ID": "x", "LTime": 3, "Payload": raw})
    assert (ev.verb, ev.version, ev.object_id) == ("DELETE", "f" * 32, object_id(name))
    assert parse({"ID": "x", "Payload": b"PUT:legacy-name"}) is None
