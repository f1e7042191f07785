"""relapse-risk: early warning of households at risk of falling back into poverty."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("relapse-risk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
