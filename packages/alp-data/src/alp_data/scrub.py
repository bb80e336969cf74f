"""Remove credentials from URLs inside any text before it reaches a log, report or error.

Manifests may name audio by presigned or credentialed URLs (``s3://key:secret@bucket/..``,
``https://..?X-Amz-Signature=..``, Azure SAS ``?sv=..&sig=..``). The data code reads them as
given, but every message that shows a location goes through :func:`scrub_url` first.
"""

from __future__ import annotations

import re

__all__ = ["SECRET_QUERY_KEYS", "safe_cause", "scrub_url"]

#: Query parameters whose values are replaced by ``***`` (compared case-insensitively):
#: AWS SigV4 presigned URLs, Google signed URLs, Azure SAS tokens and common token names.
SECRET_QUERY_KEYS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-goog-signature", "x-goog-credential",
    "awsaccesskeyid", "signature", "sig", "token", "access_token", "refresh_token",
    "id_token", "key", "api_key", "apikey", "password", "secret", "client_secret",
    "sv", "se", "sp", "ss", "srt", "st", "spr", "skoid", "sktid", "skt", "ske", "sks", "skv",
})

_MASK = "***"
# userinfo: everything between "scheme://" and the last "@" before the host's end
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#'\"<>@]*"
                       r"(?:@[^/\s?#'\"<>@]*)*@")
# a query parameter, in a URL or in a path a library has already stripped of its scheme;
# values stop at a separator, quote, bracket, blank or ':' (which starts a line number)
_QUERY = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;#\s'\"<>(),:]*)")


def _query(match: re.Match[str]) -> str:
    if match["name"].lower() not in SECRET_QUERY_KEYS or not match["value"]:
        return match[0]
    return f"{match['lead']}{match['name']}={_MASK}"


def scrub_url(text: str) -> str:
    """``text`` with credentials of the URLs in it replaced by ``***``.

    ``scheme://user:pass@host`` becomes ``scheme://***@host``, and the values of secret query
    parameters (:data:`SECRET_QUERY_KEYS`) become ``***``. Ordinary paths and messages pass
    unchanged, and scrubbing twice gives the same text.
    """
    if "@" not in text and "=" not in text:
        return text  # the common case: a plain path or message
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{_MASK}@", text)
    return _QUERY.sub(_query, text)


def safe_cause(cause: BaseException, location: str) -> BaseException | None:
    """``cause`` for ``raise ... from safe_cause(err, location)``, or ``None`` when
    ``location`` or the cause's text carries credentials: a traceback prints the cause as
    is, so the chain is cut then (the new error's own message is already scrubbed)."""
    if scrub_url(location) != location or scrub_url(str(cause)) != str(cause):
        return None
    return cause
