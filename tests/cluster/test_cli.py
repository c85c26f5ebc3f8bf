"""`tuggle-agent serve`'s command-line errors, as an operator sees them from a real process."""

import subprocess

from tuggle_agent.harness import agent_command


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
