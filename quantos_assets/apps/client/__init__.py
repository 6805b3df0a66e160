"""The compiler's Python client over Dagster's GraphQL API (see submissions.py)."""

from __future__ import annotations

from quantos_assets.apps.client.graphql import DagsterAPI, DagsterAPIError
from quantos_assets.apps.client.submissions import QuantosClient, SubmissionError, Submitted

__all__ = ["DagsterAPI", "DagsterAPIError", "QuantosClient", "SubmissionError", "Submitted"]
