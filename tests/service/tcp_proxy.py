"""A TCP proxy on loopback whose faults a test switches, between a server and its object store.

moto neither throttles nor fails, so the faults of a real network are made here: `refuse`
closes every connection at its next byte, `drop` cuts a connection once `drop_after` bytes went
up it (a transfer broken mid-way), `drop-once` cuts one such connection and then passes,
`stall` swallows requests and never answers. `pass` is a plain proxy. `downloaded` counts the
bytes that came down from the object store.
"""

from __future__ import annotations

import socket
import threading


class FaultyProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.drop_after = 0
        self.downloaded = 0
        self._counting = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, upward: bool) -> None:
        sent = 0
        try:
            while chunk := source.recv(1 << 16):
                if self.mode == "refuse" or (self.mode in ("drop", "drop-once") and upward
                                             and sent + len(chunk) > self.drop_after):
                    if self.mode == "drop-once":
                        self.mode = "pass"
                    break
                if self.mode == "stall":
                    continue  # swallowed: the other side waits for an answer that never comes
                target.sendall(chunk)
                sent += len(chunk)
                if not upward:
                    with self._counting:
                        self.downloaded += len(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
