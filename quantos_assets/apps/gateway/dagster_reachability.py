"""Whether the gateway's Dagster webserver answers, asked once at start-up.

A gateway pointed at the wrong URL still accepts submissions (they wait in the launch
queue), so a typo would otherwise only show as submissions that stay ACCEPTED. One line
at start-up names the URL it tried, without the credentials a URL may carry.
"""

from __future__ import annotations

import httpx

PROBE_TIMEOUT = 3.0


class DagsterURLError(ValueError):
    """A Dagster URL that is not http(s)://host[:port][/prefix] (one line naming it)."""


def public_url(url: str) -> str:
    """`url` without its userinfo (user:password@), fit for logs and messages."""
    try:
        return str(httpx.URL(url).copy_with(userinfo=b""))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<a URL that cannot be parsed>"


def check_dagster_url(url: str, source: str) -> str:
    """The URL if it is http(s) with a host; else DagsterURLError naming `source` (the flag
    or variable it came from) and the URL without credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise DagsterURLError(f"{source}: expected http(s)://HOST[:PORT], got {public_url(url)!r}")
    return url


def dagster_unreachable(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the webserver at `url` does not answer its /server_info, or None when it does."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/server_info", timeout=timeout)
    except httpx.TimeoutException:
        return f"no answer within {timeout:g} s"
    except httpx.HTTPError as err:
        return type(err).__name__  # the exception text may repeat the URL, credentials included
    if response.status_code != 200:
        return f"HTTP {response.status_code} from /server_info"
    return None


def startup_warning(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The one line the gateway logs at start-up when Dagster does not answer."""
    why = dagster_unreachable(url, timeout)
    if why is None:
        return None
    return (
        f"Dagster at {public_url(url)} does not answer ({why}): submissions will be accepted "
        f"and launched when it answers (check --dagster-url / QUANTOS_DAGSTER_URL)"
    )
