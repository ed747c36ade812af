"""Secret redaction for anything reported or logged (SPEC §2).

Secrets are: passwords in URLs, query values (tokens, signatures), and the stream key (the
last path segment of an rtmp:// URL, which is what a media server authenticates on).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

_URL_RE = re.compile(r"\b(?:rtmps?|https?|mqtts?)://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """Return `url` with its password, query values and RTMP stream key masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    path = parts.path
    if parts.scheme.startswith("rtmp"):
        head, sep, key = path.rpartition("/")
        if sep and key and head:
            path = f"{head}/{MASK}"
    query = parts.query
    if query:
        query = urlencode([(k, MASK) for k, _ in parse_qsl(query, keep_blank_values=True)],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Mask every URL found in free text (error messages from FFmpeg quote the URL)."""
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
