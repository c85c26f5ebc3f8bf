"""tests/unit: pure logic — no processes, no sockets; the whole folder runs in seconds
(`make unit`). A test that starts a process or talks over the network belongs in
tests/cluster/; the fixture below fails a unit test that tries."""

import socket
import subprocess

import pytest


@pytest.fixture(autouse=True)
def no_processes_or_sockets(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(
            "tests/unit is for pure logic: a test that starts processes or opens sockets belongs in tests/cluster/"
        )

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
