"""``http_get``: a real HTTP(S) fetch with a timeout and a size limit."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

from .registry import in_daemon_thread

USER_AGENT = "asynclm/0.1 (+terminal assistant)"
DEFAULT_MAX_BYTES = 200_000


def _fetch(url: str, max_bytes: int, timeout: float) -> dict:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        response = exc  # an HTTP error status still has a body worth showing
    except urllib.error.URLError as exc:
        raise ConnectionError(f"could not reach {url}: {exc.reason}") from None
    except TimeoutError:
        raise TimeoutError(f"{url} did not answer within {timeout:g}s") from None
    with response:
        body = response.read(max_bytes + 1)
        headers: Message = response.headers
        status = response.status if hasattr(response, "status") else response.code
    charset = headers.get_content_charset() or "utf-8"
    cut = len(body) > max_bytes
    body = body[:max_bytes]
    ctype = headers.get_content_type()
    if ctype.startswith("text/") or ctype in ("application/json", "application/xml", "application/javascript"):
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = body.decode("utf-8", errors="replace")
    else:
        text = f"({len(body)} bytes of {ctype}, not shown)"
    if cut:
        text += f"\n…[stopped at {max_bytes} bytes]"
    return {"url": url, "status": status, "content_type": ctype, "text": text}


async def http_get(url: str, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 10.0) -> dict:
    """Fetch a web page or API over HTTP(S); returns the status, content type and text.

    Args:
        url: an http:// or https:// address.
        max_bytes: read at most this many bytes of the body.
        timeout: give up after this many seconds.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"only http and https addresses can be fetched, not {scheme or 'no scheme'!r}")
    if not 0 < max_bytes <= 5_000_000:
        raise ValueError("max_bytes must be between 1 and 5000000")
    return await in_daemon_thread(_fetch, url=url, max_bytes=max_bytes, timeout=timeout)
