"""`quantos token ...` and `quantos audit ...`: who may call the API, and what was decided."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `quantos --help` stays fast
    from quantos_assets.apps.gateway.tokens import TokenStore
    from resources.audit_log import AuditLog

EXIT_OK, EXIT_INVALID = 0, 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser(
        "token", help="create, list or revoke API tokens (store: QUANTOS_API_TOKENS)"
    )
    actions = t.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="print a new token once")
    create.add_argument("--team", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: submit,read,admin")
    create.add_argument("--note", default="", help="who or what uses it")
    create.add_argument(
        "--ttl",
        default="90d",
        help=(
            "how long it is valid: a number and s, m, h, d or w (default 90d, at most 365d; no "
            "'never')"
        ),
    )
    create.set_defaults(handler=cmd_token_create)
    revoke = actions.add_parser("revoke", help="remove a token by its id")
    revoke.add_argument(
        "token_id", help="the id `quantos token create` and `quantos token list` show"
    )
    revoke.set_defaults(handler=cmd_token_revoke)
    listing = actions.add_parser(
        "list", help="token ids, teams, scopes and expiry (never the tokens)"
    )
    listing.set_defaults(handler=cmd_token_list)

    a = sub.add_parser("audit", help="the audit trail (QUANTOS_GATEWAY_DB)")
    audit_actions = a.add_subparsers(dest="action", required=True)
    verify = audit_actions.add_parser(
        "verify",
        help="check the chain, its HMACs and its anchor (QUANTOS_AUDIT_ANCHOR); exit 1 if broken",
    )
    verify.set_defaults(handler=cmd_audit_verify)
    show = audit_actions.add_parser("show", help="print records as JSON lines")
    show.add_argument("--subject", help="only this submission / job / asset")
    show.set_defaults(handler=cmd_audit_show)


def _store() -> TokenStore:
    from quantos_assets.apps.gateway.settings import gateway_settings
    from quantos_assets.apps.gateway.tokens import TokenStore

    return TokenStore(gateway_settings().tokens_path)


def cmd_token_create(args: argparse.Namespace) -> int:
    from quantos_assets.apps.gateway.tokens import TokenStoreError, parse_ttl

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        token, record = _store().create(args.team, scopes, args.note, parse_ttl(args.ttl))
    except TokenStoreError as err:
        print(f"quantos: {err}", file=sys.stderr)
        return EXIT_INVALID
    print(token)
    print(
        f"id {record.id}  team {record.team}  scopes {','.join(record.scopes)}  expires "
        f"{record.expires_at}"
        "  (shown once; store it now)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from quantos_assets.apps.gateway.tokens import TokenStoreError

    try:
        record = _store().revoke(args.token_id)
    except TokenStoreError as err:
        print(f"quantos: {err}", file=sys.stderr)
        return EXIT_INVALID
    print(f"revoked {record.id} (team {record.team})")
    return EXIT_OK


def cmd_token_list(_args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    print(f"{'id':<12}  {'team':<16} {'scopes':<20} {'created':<25} {'expires':<33} note")
    for record in _store().list():
        expiry = record.expiry.isoformat(timespec="seconds")
        state = f"EXPIRED {expiry}" if record.expired(now) else expiry
        if record.expires_at is None:
            state += " (legacy)"  # written before expiry: created + 365 days
        print(
            f"{record.id}  {record.team:<16} {','.join(record.scopes):<20} "
            f"{record.created_at:<25} {state:<33} {record.note}"
        )
    return EXIT_OK


def _audit() -> AuditLog:
    from quantos_assets.apps.gateway.settings import gateway_settings

    return gateway_settings().audit.reader()


def cmd_audit_verify(_args: argparse.Namespace) -> int:
    """Read-only: a missing store, table, key or anchor is a failure, never created."""
    from quantos_assets.apps.gateway.settings import gateway_settings

    report = gateway_settings().audit.verify()
    if report.ok:
        anchored = f", anchored at record {report.anchored_seq}" if report.anchored_seq else ""
        note = f" ({report.note})" if report.note else ""
        print(f"audit chain ok: {report.records} records{anchored}{note}")
        return EXIT_OK
    if report.first_bad_seq is not None:
        print(
            f"audit chain BROKEN at record {report.first_bad_seq}: {report.problem}",
            file=sys.stderr,
        )
    else:
        print(f"audit trail FAILED: {report.problem}", file=sys.stderr)
    return EXIT_INVALID


def cmd_audit_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from resources.audit_log import AuditError

    try:
        found = _audit().records(subject=args.subject)
    except AuditError as err:
        print(f"quantos: {err}", file=sys.stderr)
        return EXIT_INVALID
    for record in found:
        print(json.dumps(asdict(record), sort_keys=True))
    return EXIT_OK
