"""The code location root: thin on purpose, everything else is assembled."""
from __future__ import annotations

from definitions.assemble import build_definitions

defs = build_definitions()
