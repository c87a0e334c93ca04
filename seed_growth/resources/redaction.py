"""Secrets out of anything printed: log lines, error messages, metadata."""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (the password runs to the authority's last "@")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):(?P<secret>[^\s/?#]*)@")
# libpq key=value (password=x, password = 'x y'), query strings (?password=x&...), and their relatives
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:ssl)?(?:password|passwd|pwd|token|secret|api_?key)\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bAuthorization:\s*Bearer\s+)(?P<secret>[^\s'\",<][^\s'\",]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every password and token replaced by ``***``: a URL's userinfo password
    (``postgresql://u:***@h/db``), a key=value password (libpq ``password=***``, a query's
    ``?password=***``, also ``sslpassword``, ``token``, ``secret``, ``api_key``) and an ``Authorization:
    Bearer`` header's token."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)
