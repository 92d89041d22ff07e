"""What one connection's streaming compressor costs on the events orion really sent.

    .venv/bin/python -m bench.encoder bench/out/capture-T-1000.json

Per-connection compression was most of a fan-out's CPU time and of a connection's memory,
until viewers with the same stream came to share one compressor (app/belt/lane.py): now it is
paid once per event, and this table says what that one call costs. This replays the captured
stream (the first frame, then every update's event, exactly as the load client decoded them)
through one `StreamEncoder` per setting, in this process, with no sockets: microseconds and
bytes per update event, and the resident memory each live encoder keeps. It is what the choice
of quality and window trades.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints

from app.belt.sse import StreamEncoder
from bench.capture import load_events, window


def settings(lgwin: int) -> list[tuple[str, str, int, int]]:
    """The settings compared: orion's (quality 5, the window it picks for this stream), lower
    qualities at that window, a larger window, brotli's 64 KiB default when orion's is larger
    (a region bigger than the window cannot reuse its previous frame), and streaming gzip."""
    rows = [
        (f"brotli q5 lgwin{lgwin} (orion's)", "br", 5, lgwin),
        (f"brotli q4 lgwin{lgwin}", "br", 4, lgwin),
        (f"brotli q3 lgwin{lgwin}", "br", 3, lgwin),
        (f"brotli q2 lgwin{lgwin}", "br", 2, lgwin),
        (f"brotli q5 lgwin{lgwin + 2}", "br", 5, lgwin + 2),
    ]
    if lgwin != 16:
        rows.append(("brotli q5 lgwin16", "br", 5, 16))
    rows.append(("streaming gzip -6", "gzip", 5, 16))
    return rows


RUNS = 3
COLD = 300  # encoders taking turns, as a fan-out's connections do; also the memory sample
COLD_EVENTS = 5
SKIP = 3  # the first updates after the first frame still teach the window the new titles


def measure(capture: str) -> dict[str, Any]:
    """One row per setting: µs (hot and cold) and bytes per update event, KiB per live encoder.

    *Hot* is one encoder compressing event after event, its state in the CPU caches. *Cold* is
    what a fan-out does: `COLD` encoders take turns on each event, so every encoder's hash
    tables have left the caches by the time its turn comes again.
    """
    initial, updates = load_events(capture)
    events = list(updates.values())
    steady = events[SKIP:] if len(events) > SKIP + 2 else events
    warm = events[: len(events) - len(steady)]
    process = psutil.Process()
    rows = []
    lgwin_orion = window(initial)
    for name, encoding, quality, lgwin in settings(lgwin_orion):
        best = float("inf")
        sizes: list[int] = []
        first = 0
        for _ in range(RUNS):
            encoder = StreamEncoder(encoding, quality=quality, lgwin=lgwin)
            first = sum(len(encoder.encode(chunk)) for chunk in initial)
            for event in warm:
                encoder.encode(event)
            start = time.perf_counter()
            sizes = [len(encoder.encode(event)) for event in steady]
            best = min(best, (time.perf_counter() - start) / len(steady))
        gc.collect()
        before = process.memory_info().rss
        encoders = [StreamEncoder(encoding, quality=quality, lgwin=lgwin) for _ in range(COLD)]
        for encoder in encoders:
            for chunk in initial:
                encoder.encode(chunk)
        for event in warm:  # untimed: the first updates still fault in the encoders' pages
            for encoder in encoders:
                encoder.encode(event)
        memory = (process.memory_info().rss - before) / COLD / 1024
        timed = steady[:COLD_EVENTS]
        start = time.perf_counter()
        for event in timed:
            for encoder in encoders:
                encoder.encode(event)
        cold = (time.perf_counter() - start) / (COLD * len(timed))
        memory = max(memory, (process.memory_info().rss - before) / COLD / 1024)
        del encoders
        gc.collect()
        rows.append(
            {
                "name": name,
                "first_frame_bytes": first,
                "bytes_per_event": sum(sizes) / len(sizes),
                "us_per_event": best * 1e6,
                "cold_us_per_event": cold * 1e6,
                "kib_per_encoder": memory,
            }
        )
    raw = sum(len(e) for e in steady) / len(steady)
    return {
        "raw_bytes_per_event": raw,
        "events": len(steady),
        "cold_encoders": COLD,
        "lgwin": lgwin_orion,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    result = measure(args[0] if args else "bench/out/capture-T-1000.json")
    print(f"{result['events']} update events, {result['raw_bytes_per_event']:.0f} B raw each")
    for row in result["rows"]:
        print(
            f"{row['name']:38} {row['bytes_per_event']:7.1f} B/event {row['us_per_event']:7.1f} µs/event "
            f"(cold {row['cold_us_per_event']:.1f}) "
            f"{row['kib_per_encoder']:6.0f} KiB/encoder  first frame {row['first_frame_bytes']} B"
        )


if __name__ == "__main__":
    main()
