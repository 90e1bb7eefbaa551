"""Python client for multitoken, the service that gives every user many API tokens.

``multitoken.Client`` talks to the JSON API; ``multitoken.contrib.drf`` authenticates Django REST
Framework requests against the same server.
"""

from multitoken.client import (
    Client,
    MultitokenError,
    MultitokenUnreachable,
    PairingDenied,
    PairingError,
    PairingExpired,
    TokenInfo,
)

__all__ = [
    "Client",
    "MultitokenError",
    "MultitokenUnreachable",
    "PairingDenied",
    "PairingError",
    "PairingExpired",
    "TokenInfo",
]
__version__ = "0.1.0"
