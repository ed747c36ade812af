"""A TCP relay in front of a real server, for player tests: it can hold the stream back
(a link that stops for a while) and can speak TLS to its clients (an rtmps:// server in
front of nginx-rtmp, which has no TLS of its own)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading


class Relay:
    """Relays each client to `upstream`; `hold()` / `release()` hold back what the server
    sends without losing it (the bytes wait in the server's socket). With `tls`, clients
    connect with TLS and a client that refuses the certificate is simply dropped."""

    def __init__(self, upstream: tuple[str, int], tls: ssl.SSLContext | None = None) -> None:
        self._upstream = upstream
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                if self._tls is not None:
                    client = self._tls.wrap_socket(client, server_side=True)
            except ssl.SSLError:
                continue
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            self._sockets += [client, server]
            pair = (client, server)
            ended = threading.Semaphore(0)
            for src, dst, held in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, held, pair, ended),
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, held: bool,
              pair: tuple[socket.socket, socket.socket], ended: threading.Semaphore) -> None:
        try:
            while data := src.recv(4096):
                if held:
                    self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)  # the other direction ends too
            _shut(src)
            # Only the second of the pair's threads closes the two sockets: a TLS socket
            # closed under a thread still in SSL_write lets OpenSSL write to whatever file
            # gets that descriptor number next (a TLS record once landed in ffprobe's pipe).
            if ended.acquire(blocking=False):
                for s in pair:
                    s.close()
            else:
                ended.release()

    def close(self) -> None:
        """Ends every connection; the threads close their sockets once they are out."""
        self.release()
        self._listener.close()
        for s in self._sockets[1:]:
            _shut(s)


def _shut(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
