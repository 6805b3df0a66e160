"""Where run notifications go, from the environment (read once): Slack or a plain webhook.

- QUANTOS_SLACK_WEBHOOK_URL: a Slack incoming webhook (slack_sdk's WebhookClient);
- QUANTOS_SLACK_TOKEN + QUANTOS_SLACK_CHANNEL: a bot posting with dagster-slack's
  SlackResource (QUANTOS_SLACK_API_URL overrides Slack's API base, e.g. for a proxy);
- QUANTOS_NOTIFY_WEBHOOK_URL: any HTTP endpoint, sent JSON with the text and its fields.
Any combination may be set; none means no notification sensors at all.
QUANTOS_DAGSTER_URL is the UI base the run links point at.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass


class NotifyError(Exception):
    """A target refused or could not be reached; the message names it."""


@dataclass(frozen=True)
class Notification:
    """One line in seed 002's words, plus what a machine reading it wants."""

    text: str
    event: str  # retried | failed | complete
    pipeline: str
    node: str | None
    partition: str | None
    run_id: str
    run_url: str
    attempt: int | None = None
    max_attempts: int | None = None


@dataclass(frozen=True)
class NotifySettings:
    slack_webhook_url: str | None = None
    slack_token: str | None = None
    slack_channel: str | None = None
    slack_api_url: str | None = None
    webhook_url: str | None = None
    dagster_url: str = "http://localhost:3000"
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(
            self.slack_webhook_url or (self.slack_token and self.slack_channel) or self.webhook_url
        )

    def run_url(self, run_id: str) -> str:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}"


def notify_settings(env: Mapping[str, str]) -> NotifySettings:
    """The Slack / webhook settings of `env` (read by resources/profile.py, nowhere else)."""
    token, channel = (
        env.get("QUANTOS_SLACK_TOKEN") or None,
        env.get("QUANTOS_SLACK_CHANNEL") or None,
    )
    if bool(token) != bool(channel):
        raise ValueError("QUANTOS_SLACK_TOKEN and QUANTOS_SLACK_CHANNEL: set both or neither")
    return NotifySettings(
        slack_webhook_url=env.get("QUANTOS_SLACK_WEBHOOK_URL") or None,
        slack_token=token,
        slack_channel=channel,
        slack_api_url=env.get("QUANTOS_SLACK_API_URL") or None,
        webhook_url=env.get("QUANTOS_NOTIFY_WEBHOOK_URL") or None,
        dagster_url=env.get("QUANTOS_DAGSTER_URL") or "http://localhost:3000",
    )


class Notifier:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    def send(self, note: Notification) -> None:
        """Deliver to every configured target; raise NotifyError on the first that fails."""
        s = self.settings
        slack_text = f"{note.text} <{note.run_url}|View run>"
        if s.slack_webhook_url:
            from slack_sdk.webhook import WebhookClient

            try:
                response = WebhookClient(s.slack_webhook_url, timeout=int(s.timeout_s)).send(
                    text=slack_text
                )
            except OSError as err:
                raise NotifyError(f"Slack webhook unreachable: {err}") from None
            if response.status_code != 200:
                raise NotifyError(
                    f"Slack webhook answered {response.status_code}: {response.body[:200]}"
                )
        if s.slack_token and s.slack_channel:
            from dagster_slack import SlackResource
            from slack_sdk.errors import SlackApiError

            client = SlackResource(token=s.slack_token).get_client()
            if s.slack_api_url:
                client.base_url = s.slack_api_url.rstrip("/") + "/"
            try:
                client.chat_postMessage(channel=s.slack_channel, text=slack_text)
            except SlackApiError as err:
                raise NotifyError(
                    f"Slack refused the message: {err.response.get('error')}"
                ) from None
            except OSError as err:
                raise NotifyError(f"Slack API unreachable: {err}") from None
        if s.webhook_url:
            body = json.dumps(asdict(note)).encode()
            request = urllib.request.Request(
                s.webhook_url,
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=s.timeout_s) as reply:
                    reply.read()
            except (urllib.error.URLError, OSError) as err:
                raise NotifyError(f"webhook {s.webhook_url} failed: {err}") from None
