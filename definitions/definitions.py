"""The code location root: thin on purpose, everything else is assembled."""

from __future__ import annotations

from definitions.assemble import build_definitions
from resources.redaction import install_log_redaction

# settings may carry passwords in URLs: no log line of the location shows one
install_log_redaction()
defs = build_definitions()
