"""Command-line pieces shared by the sub-commands that read config/tuggle.yaml.

Kept apart from `serve` so that `handle-event`, which Consul starts on every watch
firing, loads only click, PyYAML and the config module.
"""

from __future__ import annotations

import logging
import sys

import click

from ..config import ConfigError, load_config

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_formatter(fmt: str = "text") -> logging.Formatter:
    """`log_format: text` (one line per record) or `json` (one JSON object per line: time,
    level, logger, message, plus the record's `extra` fields, such as the access log's)."""
    if fmt == "json":
        # Imported only when asked for: handle-event starts on every watch firing and logs text by default.
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
        )
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def config_options(f):
    """Flags shared by the commands that load config/tuggle.yaml; flags beat the file."""
    opts = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            envvar="TUGGLE_CONFIG",
            help="YAML config file (see config/tuggle.yaml for every key).",
        ),
        click.option("--data-dir", help="Where objects are stored [./data]."),
        click.option("--port", type=int, help="HTTP port [8900]."),
        click.option("--bind", help="Listen address [0.0.0.0]."),
        click.option("--namespace", help="Consul service / KV prefix / event name [tuggle]."),
        click.option(
            "--consul",
            "consul_address",
            help="Consul agent host:port or http(s)://host:port [CONSUL_HTTP_ADDR or 127.0.0.1:8500].",
        ),
        # Consul's own -token-file, -ca-file, -client-cert, -client-key.  No token
        # flag: a token on the command line is visible to every user in `ps`.
        click.option("--consul-token-file", help="File holding the Consul ACL token [CONSUL_HTTP_TOKEN_FILE]."),
        click.option("--consul-ca-file", help="CA bundle for TLS to Consul [CONSUL_CACERT]."),
        click.option("--consul-client-cert", help="Client certificate for TLS to Consul [CONSUL_CLIENT_CERT]."),
        click.option("--consul-client-key", help="Client key for TLS to Consul [CONSUL_CLIENT_KEY]."),
        click.option("--fetch-rate", help="Download cap for the whole node: unlimited, 50MB, 1.5GiB ..."),
        click.option("--serve-rate", help="Upload-to-peers cap for the whole node."),
        click.option("--fetch-timeout", help="Give up a fetch after this long [10m]."),
        click.option(
            "--fetch-only/--no-fetch-only",
            "--slave",
            default=None,
            help="Refuse PUT and never advertise as a holder (--slave: Go tuggle's name).",
        ),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None),
        click.option(
            "--log-format", type=click.Choice(["text", "json"]), default=None, help="Log lines as text or JSON."
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


# Flag name -> setting key, where they differ by more than '-' vs '_'.
_FLAG_KEYS = {
    "consul_address": "consul.address",
    "consul_token_file": "consul.token_file",
    "consul_ca_file": "consul.ca_file",
    "consul_client_cert": "consul.cert_file",
    "consul_client_key": "consul.key_file",
}


def load_from_flags(config_path, **flags):
    """Flags beat Consul's environment variables, which beat the YAML file."""
    overrides = {_FLAG_KEYS.get(k, k): v for k, v in flags.items() if v is not None}
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
