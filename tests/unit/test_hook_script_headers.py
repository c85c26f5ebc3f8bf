"""The example hook scripts in hooks/ are executable and carry the documented header."""

import os

import pytest

from tests import REPO

HOOKS = REPO / "hooks"


@pytest.mark.parametrize("script", ("check-disk-space", "verify-checksum", "extract-tarball", "notify"))
def test_scripts_are_executable_and_documented(script):
    path = HOOKS / script
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith(("#!/bin/sh\n", "#!/usr/bin/env python3\n"))
    for part in ("Hook kind:", "Arguments:", "Environment read:", "Exit codes:", "hooks:"):
        assert part in text, f"{script}: header lacks {part!r}"
    assert f"hooks/{script}" in (HOOKS / "README.md").read_text()
