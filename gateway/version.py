"""The installed version, for `--version` and `gateway_build_info`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("privacy-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
