"""FFmpeg's own output I/O (avio) called through ctypes, so the process keeps running while
FFmpeg connects or waits for the network.

PyAV opens an output URL (`avio_open`: name resolution, TCP connect, the RTMP handshake and
publish) while holding the GIL: a server whose host drops packets froze every thread of the
pusher for FFmpeg's 5 s connect timeout, longer than the supervisor waits before it takes
a silent worker for hung. A foreign call through ctypes releases the GIL. So `AvioWriter`
opens the URL with FFmpeg's own protocol (the same bytes on the wire as `av.open(url)`),
and PyAV's muxer writes into it as into a Python file. An interrupt callback lets a caller
abandon a connect or a blocked write (FFmpeg polls it every 100 ms while it waits).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import av
import av.error

AVIO_FLAG_WRITE = 2
_Interrupt = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _InterruptCB(ctypes.Structure):
    _fields_ = [("callback", _Interrupt), ("opaque", ctypes.c_void_p)]


class _AvioHead(ctypes.Structure):
    """The leading public fields of AVIOContext (libavformat's ABI), up to `error`: avio
    reports a failed write there, not in a return value."""

    _fields_ = [("av_class", ctypes.c_void_p), ("buffer", ctypes.c_void_p),
                ("buffer_size", ctypes.c_int), ("buf_ptr", ctypes.c_void_p),
                ("buf_end", ctypes.c_void_p), ("opaque", ctypes.c_void_p),
                ("read_packet", ctypes.c_void_p), ("write_packet", ctypes.c_void_p),
                ("seek", ctypes.c_void_p), ("pos", ctypes.c_int64),
                ("eof_reached", ctypes.c_int), ("error", ctypes.c_int)]


@cache
def _libavformat() -> ctypes.CDLL:
    """The libavformat PyAV itself uses (the copy in its wheel, else the system's), so
    FFmpeg's log lines reach PyAV's log capture and its exceptions."""
    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libavformat*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("avformat")
    if name is None:
        raise OSError("libavformat not found")
    lib = ctypes.CDLL(name)
    pointer = ctypes.POINTER(ctypes.c_void_p)
    lib.avio_open2.argtypes = [pointer, ctypes.c_char_p, ctypes.c_int,
                               ctypes.POINTER(_InterruptCB), pointer]
    # libavutil's, found through libavformat's dependencies
    lib.av_dict_set.argtypes = [pointer, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.av_dict_free.argtypes = [pointer]
    lib.av_dict_free.restype = None
    lib.avio_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.avio_write.restype = None
    lib.avio_flush.argtypes = [ctypes.c_void_p]
    lib.avio_flush.restype = None
    lib.avio_closep.argtypes = [pointer]
    return lib


class AvioWriter:
    """A connected output URL that takes bytes (`write`) like a file opened for writing.

    `open_timeout` bounds the connect and handshake (FFmpeg's RTMP would wait for a silent
    server forever); `abandon()` returning True stops whatever FFmpeg is waiting for;
    `options` are the protocol's own (e.g. RTMP's `rtmp_tcurl`).
    Raises what PyAV raises for the URL (ConnectionRefusedError, TimeoutError, …, with
    FFmpeg's last log line, such as the server's reason, in the message).
    """

    def __init__(self, url: str, open_timeout: float,
                 abandon: Callable[[], bool] = lambda: False,
                 options: dict[str, str] | None = None) -> None:
        self._lib = _libavformat()
        self._abandon = abandon
        self._deadline = time.monotonic() + open_timeout
        self._lock = threading.Lock()  # write and close never overlap
        # Kept on the object: FFmpeg calls it for as long as the context is open.
        self._interrupt = _InterruptCB(_Interrupt(self._interrupted), None)
        self._pb = ctypes.c_void_p()
        settings = ctypes.c_void_p()  # an AVDictionary
        for key, value in (options or {}).items():
            self._lib.av_dict_set(ctypes.byref(settings), key.encode(), value.encode(), 0)
        try:
            result = self._lib.avio_open2(ctypes.byref(self._pb), url.encode(),
                                          AVIO_FLAG_WRITE, ctypes.byref(self._interrupt),
                                          ctypes.byref(settings))
        finally:
            self._lib.av_dict_free(ctypes.byref(settings))  # what the protocol did not take
        self._deadline = None
        av.error.err_check(result, url)

    def _interrupted(self, _opaque: int | None) -> int:
        deadline = self._deadline
        return int(self._abandon() or (deadline is not None and time.monotonic() > deadline))

    def write(self, data: bytes) -> int:
        with self._lock:
            if not self._pb:
                raise BrokenPipeError("the connection is closed")
            # Flushed at once: the muxer hands over whole packets, and a full socket must
            # block here, where the sender measures it, not later in a buffer.
            self._lib.avio_write(self._pb, data, len(data))
            self._lib.avio_flush(self._pb)
            error = ctypes.cast(self._pb, ctypes.POINTER(_AvioHead)).contents.error
            if error < 0:
                av.error.err_check(error, "rtmp")
        return len(data)

    def close(self, timeout: float = 1.0) -> None:
        """Close (RTMP unpublishes first), giving a server that does not answer `timeout`
        s; safe twice."""
        self._deadline = time.monotonic() + timeout
        with self._lock:
            if self._pb:
                self._lib.avio_closep(ctypes.byref(self._pb))
