"""Consul client settings as Consul's api.DefaultConfig, write tokens, and load-time
validation: every bad value is a ConfigError naming its key, never a traceback later."""

import os

import pytest

from tuggle_agent.cli.options import load_from_flags
from tuggle_agent.config import ConfigError, ConsulSettings, load_config, parse_consul_address


def write(tmp_path, text: str, name: str = "c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def conf(tmp_path, yaml_text: str = "", env: dict | None = None, **overrides):
    text = f"data_dir: {tmp_path / 'data'}\n" + yaml_text
    return load_config(write(tmp_path, text), overrides or None, env=env or {})


# -- addresses ----------------------------------------------------------------
@pytest.mark.parametrize(
    "address,expected",
    [
        ("127.0.0.1:8500", (None, "127.0.0.1", 8500)),
        ("consul.service.internal:8501", (None, "consul.service.internal", 8501)),
        ("http://localhost:8500", ("http", "localhost", 8500)),
        ("https://10.0.0.1:8501/", ("https", "10.0.0.1", 8501)),
        ("[::1]:8500", (None, "::1", 8500)),
        ("https://[fe80::1]:1", ("https", "fe80::1", 1)),
    ],
)
def test_consul_addresses_accepted(address, expected):
    assert parse_consul_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "localhost",
        "127.0.0.1",
        "host:0",
        "host:65536",
        "host:99999",
        "host:port",
        "ftp://h:1",
        "http://h:1/prefix",
        "http://:8500",
        "::1:8500",
        "[not-ipv6]:1",
        "bad host:1",
        "300.1.2.3:8500",
        "http//h:1",
    ],
)
def test_bad_consul_addresses_name_the_key(tmp_path, address):
    with pytest.raises(ConfigError, match=r"consul\.address"):
        conf(tmp_path, f"consul: {{address: '{address}'}}\n")


def test_unix_socket_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match=r"CONSUL_HTTP_ADDR.*unix sockets .* not supported"):
        conf(tmp_path, env={"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"})


# -- precedence: flags > environment > file; token file > token -----------------
def test_environment_beats_file_and_flags_beat_environment(tmp_path):
    yaml_text = "consul: {address: 'file:1', ssl_verify: true}\n"
    assert conf(tmp_path, yaml_text).consul_address == "file:1"
    env = {"CONSUL_HTTP_ADDR": "env:2", "CONSUL_HTTP_SSL_VERIFY": "false"}
    cfg = conf(tmp_path, yaml_text, env)
    assert (cfg.consul_address, cfg.consul_ssl_verify) == ("env:2", False)
    assert conf(tmp_path, yaml_text, env, **{"consul.address": "flag:3"}).consul_address == "flag:3"


def test_empty_environment_variables_count_as_unset(tmp_path):
    cfg = conf(tmp_path, "consul: {address: 'file:1', token: t1}\n", {"CONSUL_HTTP_ADDR": "", "CONSUL_HTTP_TOKEN": ""})
    assert (cfg.consul_address, cfg.consul_token_value) == ("file:1", "t1")


def test_token_file_wins_over_token_as_in_consul(tmp_path):
    # Consul's api.NewClient: "If the TokenFile is set, always use that, even if a Token is configured."
    (tmp_path / "tok").write_text("  from-file\n")
    cfg = conf(tmp_path, "consul: {token: from-yaml}\n", {"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "tok")})
    assert cfg.consul_token_value == "from-file" and cfg.consul_settings.token == "from-file"
    cfg = conf(tmp_path, f"consul: {{token_file: {tmp_path / 'tok'}}}\n", {"CONSUL_HTTP_TOKEN": "from-env"})
    assert cfg.consul_token_value == "from-file"
    (tmp_path / "empty").write_text("\n")
    cfg = conf(tmp_path, f"consul: {{token_file: {tmp_path / 'empty'}}}\n", {"CONSUL_HTTP_TOKEN": "from-env"})
    assert cfg.consul_token_value == "from-env"  # an empty file falls back to the token


def test_unreadable_token_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"consul.token_file.*cannot read token file .*nope"):
        conf(tmp_path, env={"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "nope")})


def test_token_with_a_newline_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"consul\.token"):
        conf(tmp_path, env={"CONSUL_HTTP_TOKEN": "abc\r\nX-Evil: 1"})


def test_flags_map_to_settings_and_beat_environment(tmp_path, monkeypatch):
    (tmp_path / "tok").write_text("flag-token")
    (tmp_path / "envtok").write_text("env-token")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(tmp_path / "envtok"))
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "env:1")
    cfg = load_from_flags(
        str(write(tmp_path, f"data_dir: {tmp_path / 'd'}\n")),
        consul_address="flag:2",
        consul_token_file=str(tmp_path / "tok"),
        port=None,
    )
    assert (cfg.consul_address, cfg.consul_token_value) == ("flag:2", "flag-token")


# -- scheme and TLS -----------------------------------------------------------
def test_scheme_from_address_or_ssl(tmp_path):
    assert conf(tmp_path).consul_settings.scheme == "http"
    assert conf(tmp_path, env={"CONSUL_HTTP_SSL": "true"}).consul_settings.scheme == "https"
    assert conf(tmp_path, env={"CONSUL_HTTP_ADDR": "https://c:8501"}).consul_settings.scheme == "https"
    # As Consul: an explicit http:// never turns off TLS that was asked for.
    assert (
        conf(tmp_path, "consul: {ssl: true}\n", {"CONSUL_HTTP_ADDR": "http://c:8501"}).consul_settings.scheme == "https"
    )


def test_bad_boolean_in_environment_names_key_and_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"consul.ssl.*CONSUL_HTTP_SSL.*true or false"):
        conf(tmp_path, env={"CONSUL_HTTP_SSL": "maybe"})
    assert conf(tmp_path, env={"CONSUL_HTTP_SSL": "T"}).consul_ssl  # Go's strconv.ParseBool spelling


def test_tls_settings_become_requests_verify_and_cert(tmp_path):
    for name in ("ca.pem", "c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    env = {
        "CONSUL_CACERT": str(tmp_path / "ca.pem"),
        "CONSUL_CLIENT_CERT": str(tmp_path / "c.pem"),
        "CONSUL_CLIENT_KEY": str(tmp_path / "k.pem"),
        "CONSUL_HTTP_ADDR": "https://[::1]:8501",
    }
    s = conf(tmp_path, env=env).consul_settings
    assert (s.verify, s.cert) == (str(tmp_path / "ca.pem"), (str(tmp_path / "c.pem"), str(tmp_path / "k.pem")))
    assert s.base_url == "https://[::1]:8501"
    assert conf(tmp_path, env={**env, "CONSUL_HTTP_SSL_VERIFY": "false"}).consul_settings.verify is False
    assert conf(tmp_path).consul_settings.verify is True


def test_tls_file_problems_name_the_key(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError, match="both client cert and client key"):
        conf(tmp_path, env={"CONSUL_CLIENT_CERT": str(tmp_path / "c.pem")})
    with pytest.raises(ConfigError, match=r"consul\.ca_file.*cannot read"):
        conf(tmp_path, env={"CONSUL_CACERT": str(tmp_path / "missing.pem")})


def test_settings_from_a_bare_address():
    s = ConsulSettings.from_address(None, "t")
    assert (s.base_url, s.token) == ("http://127.0.0.1:8500", "t")
    with pytest.raises(ValueError):
        ConsulSettings.from_address("nonsense", None)


# -- write token ----------------------------------------------------------------
def test_write_token_value(tmp_path):
    assert conf(tmp_path).write_token_value is None
    assert conf(tmp_path, "write_token: s3cret\n").write_token_value == "s3cret"
    (tmp_path / "wt").write_text("\n  from-file \n")
    cfg = conf(tmp_path, f"write_token_file: {tmp_path / 'wt'}\n")
    assert cfg.write_token_value == "from-file"
    assert "from-file" not in repr(cfg) and "s3cret" not in repr(conf(tmp_path, "write_token: s3cret\n"))


@pytest.mark.parametrize(
    "yaml_text,match",
    [
        ("write_token: a\nwrite_token_file: /x\n", "not both"),
        ("write_token_file: {dir}/missing\n", "write_token_file.*cannot read"),
        ("write_token_file: {dir}/empty\n", "write_token_file.*empty"),
        ("write_token: 'has space'\n", "write_token"),
    ],
)
def test_bad_write_tokens_refused(tmp_path, yaml_text, match):
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ConfigError, match=match):
        conf(tmp_path, yaml_text.format(dir=tmp_path))


# -- values that used to give tracebacks ------------------------------------------
@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("fetch_timeout: .nan\n", "fetch_timeout"),
        ("fetch_timeout: .inf\n", "fetch_timeout"),
        ("stall_timeout: -.inf\n", "stall_timeout"),
        ("check_interval: 1e300\n", "check_interval"),
        ("max_upload_size: .inf\n", "max_upload_size"),
        ("max_upload_size: .nan\n", "max_upload_size"),
        ("max_upload_size: 16PiB\n", "max_upload_size"),
        ("fetch_rate: .inf\n", "fetch_rate"),
        ("hooks: {pre_download: [{command: [x], timeout: .nan}]}\n", "hooks"),
        ("bind: 'not a host!'\n", "bind"),
        ("bind: 999.1.1.1\n", "bind"),
        ("bind: [127.0.0.1]\n", "bind"),
        ("advertise_address: 'a b'\n", "advertise_address"),
    ],
)
def test_former_tracebacks_are_config_errors_naming_the_key(tmp_path, yaml_text, key):
    with pytest.raises(ConfigError, match=key):
        conf(tmp_path, yaml_text)


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "127.0.0.1", "::1", "localhost", "node-1.example.com"])
def test_good_binds_accepted(tmp_path, bind):
    assert conf(tmp_path, f"bind: '{bind}'\n").bind == bind


def test_data_dir_must_be_a_writable_or_creatable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub" / "data"):
        with pytest.raises(ConfigError, match=r"data_dir.*" + str(bad)):
            load_config(write(tmp_path, f"data_dir: {bad}\n"), env={})
    fresh = tmp_path / "new" / "data"
    assert load_config(write(tmp_path, f"data_dir: {fresh}\n"), env={}).data_dir == fresh
    assert not fresh.exists(), "loading the config creates nothing"
    existing = tmp_path / "existing"
    existing.mkdir()
    load_config(write(tmp_path, f"data_dir: {existing}\n"), env={})
    assert os.listdir(existing) == [], "the write check leaves nothing behind"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/proc/sys"), reason="needs a read-only mount")
def test_data_dir_on_a_read_only_mount_is_refused(tmp_path):
    # /proc/sys is read-only for writes of new files even to root: a real write check, not os.access.
    with pytest.raises(ConfigError, match="data_dir"):
        load_config(write(tmp_path, "data_dir: /proc/sys\n"), env={})


def test_scrub_interval_may_be_zero_but_not_nan(tmp_path):
    assert conf(tmp_path, "scrub_interval: 0\n").scrub_interval == 0
    with pytest.raises(ConfigError, match="scrub_interval"):
        conf(tmp_path, "scrub_interval: .nan\n")
    with pytest.raises(ConfigError, match="min_source_rate"):
        conf(tmp_path, "min_source_rate: .inf\n")
