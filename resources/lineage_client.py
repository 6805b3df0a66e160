"""Delivery of OpenLineage events, through openlineage-python's own transports.

The sensor (sensors/openlineage.py) builds events and hands them here; this module only
knows where they go (`LineageSettings` from the profile). The client's transports are used
as they are (file: JSON lines appended to one file; http: Marquez's `POST /api/v1/lineage`),
so any backend the client supports works with `QUANTOS_LINEAGE=openlineage` and the
client's own configuration.

A delivery failure is one `LineageDeliveryError` line naming the target: the sensor stops at
that event and resends it on the next tick, so an unreachable Marquez delays events and
loses none.
"""

from __future__ import annotations

from typing import Any

from resources.profile import LineageSettings


class LineageDeliveryError(RuntimeError):
    """The target refused the event or could not be reached; the message names the target."""


class LineageEmitter:
    def __init__(self, settings: LineageSettings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def target(self) -> str:
        s = self.settings
        if s.transport == "file":
            return f"file {s.file_path}"
        if s.transport == "http":
            return f"{s.url}/{s.endpoint}"
        return "the OpenLineage client's configured transport"

    def emit(self, event: Any) -> None:
        try:
            self._get_client().emit(event)
        except Exception as err:  # noqa: BLE001 - requests, OS and client errors alike: one line
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise LineageDeliveryError(
                f"OpenLineage event not delivered to {self.target}: {reason}"
            ) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close(timeout=self.settings.timeout_s)
            self._client = None

    def _get_client(self) -> Any:
        if self._client is None:
            # Imported here: the code location imports this module; the client only the sensor.
            from openlineage.client import OpenLineageClient

            self._client = OpenLineageClient(transport=self._transport())
        return self._client

    def _transport(self) -> Any:
        s = self.settings
        if s.transport == "file":
            from openlineage.client.transport.file import FileConfig, FileTransport

            assert s.file_path is not None
            s.file_path.parent.mkdir(parents=True, exist_ok=True)
            return FileTransport(FileConfig(log_file_path=str(s.file_path), append=True))
        if s.transport == "http":
            from openlineage.client.transport.http import HttpConfig, HttpTransport

            config: dict[str, Any] = {
                "url": s.url,
                "endpoint": s.endpoint,
                "timeout": s.timeout_s,
                # Few quick retries: a tick that cannot deliver resends next tick anyway.
                "retry": {
                    "total": 2,
                    "connect": 2,
                    "read": 2,
                    "backoff_factor": 0.2,
                    "status_forcelist": [500, 502, 503, 504],
                    "allowed_methods": ["POST"],
                },
            }
            if s.api_key:
                config["auth"] = {"type": "api_key", "apiKey": s.api_key}
            return HttpTransport(HttpConfig.from_dict(config))
        if s.transport == "openlineage":
            return None  # OpenLineageClient resolves its own config (file, env, yaml)
        raise LineageDeliveryError(f"OpenLineage is off (QUANTOS_LINEAGE={s.transport})")
