"""Backpressure: a fixed kernel send buffer per connection, so a client that stops reading is felt.

Linux grows each TCP socket's send buffer by itself (``net.ipv4.tcp_wmem``, up to 4 MiB). On
loopback a client that never reads let the worker queue about 1.6 MB into the kernel before a
write blocked (measured by soak/slow_clients.py's never-reading clients). Until a write blocks
the worker cannot tell that client from a healthy one: the stream's send timeout
(``ORION_SEND_TIMEOUT``, app/belt/live.py) never starts counting, and every such client pins
megabytes of kernel memory that the worker's RSS does not show.

A fixed ``SO_SNDBUF`` (which also turns the autotuning off for that socket) bounds both: a
stalled reader blocks the writer after about that many bytes, so the send timeout drops it
within seconds, and it costs at most about twice that in kernel memory (the kernel doubles the
value for its bookkeeping). A healthy client never notices: it drains the buffer as fast as the
network allows, and 64 KiB per round trip is 5 MB/s at 10 ms, far more than a stream of HTML
patches needs. The option is set on the listening sockets: Linux copies it to every accepted
connection.

    ORION_SEND_BUFFER    bytes of kernel send buffer per connection (default 65536; 0 leaves
                         the kernel's autotuning on)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_SEND_BUFFER = 64 * 1024
# Below this even a first frame of a small page would need several round trips.
_SMALLEST = 4096


def send_buffer_size(environ: Mapping[str, str] = os.environ) -> int:
    """The send buffer to set, in bytes, from ``ORION_SEND_BUFFER``; 0 means leave it to the kernel.

    >>> send_buffer_size({})
    65536
    >>> send_buffer_size({"ORION_SEND_BUFFER": "0"})
    0
    """
    raw = environ.get("ORION_SEND_BUFFER", "").strip()
    if not raw:
        return DEFAULT_SEND_BUFFER
    try:
        size = int(raw)
    except ValueError:
        raise SystemExit(
            f"ORION_SEND_BUFFER={raw!r} is not a number of bytes; use e.g. 65536, or 0 to leave the "
            "kernel's send buffer autotuning on."
        ) from None
    if size != 0 and size < _SMALLEST:
        raise SystemExit(
            f"ORION_SEND_BUFFER={size} is too small to send a page in a few round trips; use at "
            f"least {_SMALLEST} (the default is {DEFAULT_SEND_BUFFER}), or 0 for the kernel's autotuning."
        )
    return size


def cap(sockets: Iterable[Any], size: int) -> None:
    """Set ``SO_SNDBUF`` to ``size`` on each socket (listening sockets pass it to accepted ones)."""
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def install(worker: Any) -> int:
    """Cap the send buffer of every connection a gunicorn ``worker`` accepts; returns the size.

    Called from gunicorn.conf.py's ``post_worker_init``, before the worker starts accepting.
    """
    size = send_buffer_size()
    if size:
        cap(worker.sockets, size)
    return size
