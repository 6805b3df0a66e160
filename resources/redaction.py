"""Passwords in URLs never leave the process: one function for every message and log line.

Settings such as QUANTOS_DAGSTER_URL, QUANTOS_GATEWAY_DB or QUANTOS_CATALOG_URI may carry
credentials as URL userinfo (`http://user:password@host`). They reach users inside free
text: an exception's message, a submission's `error`, an audit detail, a log line. The
maintained helpers each render one well-formed URL (SQLAlchemy's
`URL.render_as_string(hide_password=True)`; httpx masks a URL's password only in its
`repr`); neither finds a URL inside a sentence, which is where they leak. So `redact`
scans text for `scheme://user:password@` and keeps the user and the host, so the message
still says which server was meant.

`install_log_redaction` applies it to every log record the process creates (any logger,
any handler, tracebacks included), so a library that logs a URL is covered too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# scheme://user:password@ -- the password runs to the last '@' before white space: a raw
# '@', '/', '?' or '#' in a hand-written password must not end the match early and leak the
# rest. The price is over-masking a URL with a port and an '@' in its path
# (http://h:3000/p@x -> http://h:***@x); a message may say less, never a password. The
# scheme may hold '_' (Kafka's SASL_SSL://).
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-_]*://[^\s:/?#@]*):(?P<password>\S*)@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    if "@" not in text:  # the common case: nothing to scan
        return text
    return _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


_installed = False


def install_log_redaction() -> None:
    """Redact every log record created from now on in this process (idempotent).

    A record factory rather than a handler filter: it covers records of every logger and
    whatever handlers uvicorn, Dagster or an operator's logging config attach.
    """
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a bad format string: the handler reports it
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted; handlers reuse exc_text as is.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
