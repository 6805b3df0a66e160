"""A loopback TCP forwarder that can take a real service "down" and bring it back.

Fault tests point a client at the forwarder instead of the service (PostgreSQL, moto's S3):
`down()` resets every open connection and every new one, so the client sees what it would
see if the service or the network went away (connection reset); `up()` forwards again. The
service itself is never touched, so a shared PostgreSQL stays available to every other test.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator


class TcpOutage:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._up = False
        # One listener for the forwarder's life: giving the port back during an outage let
        # another process take it (it is an ephemeral port) and the service never came back.
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    # -- control ---------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self._up

    def up(self) -> None:
        """Forward every new connection to the target (no-op when up)."""
        self._up = True

    def down(self) -> None:
        """Reset the open connections and every new one (RST, as a dead peer would); no-op
        when down."""
        self._up = False
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            _reset(conn)

    def close(self) -> None:
        self.down()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(timeout=5)

    # -- forwarding ------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed by close()
            if not self._up:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # linger 0: close() sends RST instead of FIN
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def tcp_outage(target_host: str, target_port: int) -> Iterator[TcpOutage]:
    """A forwarder to the target, up; taken down at exit."""
    outage = TcpOutage(target_host, target_port)
    outage.up()
    try:
        yield outage
    finally:
        outage.close()
