"""dirconv's Python client and CLI: `from dirconv import Client`."""

from dirconv.client import ApiError, Client, NotSupported

__all__ = ["ApiError", "Client", "NotSupported"]
