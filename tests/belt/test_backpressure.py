"""backpressure: a capped send buffer makes a client that never reads block the writer early."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from app.belt import backpressure


def _queued_until_blocked(listener: socket.socket) -> int:
    """Bytes the server side of a fresh connection can write to a peer that never reads."""
    listener.listen()
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        with server:
            server.setblocking(False)
            total = 0
            event = b"event: datastar-patch-elements\ndata: elements <li>x</li>\n\n"
            try:
                while total < 64 * 2**20:
                    total += server.send(event)
            except BlockingIOError:
                pass
            return total


def test_a_capped_listener_passes_its_send_buffer_to_every_connection() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        backpressure.install(SimpleNamespace(sockets=[listener]))
        queued = _queued_until_blocked(listener)
    # The kernel doubles SO_SNDBUF for its bookkeeping: a write blocks within about that much,
    # where an autotuned socket on loopback takes megabytes.
    assert 0 < queued <= 2 * backpressure.DEFAULT_SEND_BUFFER


def test_zero_leaves_the_kernels_autotuning_alone() -> None:
    with socket.socket() as listener:
        before = listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        worker = SimpleNamespace(sockets=[listener])
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ORION_SEND_BUFFER", "0")
            assert backpressure.install(worker) == 0
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == before


@pytest.mark.parametrize(("value", "message"), [("lots", "not a number of bytes"), ("100", "too small")])
def test_a_bad_setting_names_the_fix(value: str, message: str) -> None:
    with pytest.raises(SystemExit) as refused:
        backpressure.send_buffer_size({"ORION_SEND_BUFFER": value})
    assert message in str(refused.value) and value in str(refused.value)
    assert "65536" in str(refused.value)
