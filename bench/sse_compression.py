"""Measure streaming compression of Datastar events: bytes and microseconds per event.

The workload is a live todo region: a ~10 KB ``<ul>`` of 50 rows re-sent whole 200 times, one row
changed each time (its done state flips and its title gets new text), the way a live region
re-renders after each write. Run from the repo root:

    .venv/bin/python -m bench.sse_compression

Bytes per event leave out the first frame (it is the whole region, shown on its own), because the
steady state is what every later write costs each viewer. Times are the best of a few runs.
"""

import gc
import random
import time
from collections.abc import Callable

import brotli  # type: ignore[import-untyped]  # brotli ships no type hints
import psutil  # type: ignore[import-untyped]  # psutil ships no type hints
from markupsafe import Markup

from app.belt.sse import StreamEncoder, patch_elements

ROWS = 50
EVENTS = 200
RUNS = 5
ROW = Markup(
    '<li id="todo-{id}" class="todo{done_class}">'
    '<input type="checkbox" data-on:change="@post(\'/todos/{id}/toggle\')"{checked}>'
    "<label>{title}</label>"
    "<button data-on:click=\"@delete('/todos/{id}')\">&times;</button></li>"
)
WORDS = (
    "buy",
    "milk",
    "eggs",
    "bread",
    "call",
    "mum",
    "fix",
    "bike",
    "book",
    "flights",
    "water",
    "plants",
    "pay",
    "rent",
)


def events() -> list[str]:
    """Return the 200 patch-elements events of the workload (deterministic)."""
    rng = random.Random(42)
    todos = [
        {
            "id": i,
            "title": " ".join(rng.choices(WORDS, k=4)),
            "done": rng.random() < 0.3,
        }
        for i in range(1, ROWS + 1)
    ]
    out = []
    for n in range(EVENTS):
        row = todos[rng.randrange(ROWS)]
        row["done"] = not row["done"]
        row["title"] = f"{' '.join(rng.choices(WORDS, k=3))} #{n}"
        items = Markup("").join(
            ROW.format(
                id=t["id"],
                title=t["title"],
                done_class=" done" if t["done"] else "",
                checked=Markup(" checked") if t["done"] else "",
            )
            for t in todos
        )
        ul = Markup('<ul id="todos" class="todo-list">{}</ul>').format(items)
        out.append(patch_elements(ul))
    return out


def streaming(quality: int, lgwin: int, encoding: str = "br") -> Callable[[list[str]], list[int]]:
    """Return a runner that sends every event through one StreamEncoder."""

    def run(texts: list[str]) -> list[int]:
        encoder = StreamEncoder(encoding, quality=quality, lgwin=lgwin)
        return [len(encoder.encode(text)) for text in texts]

    return run


def per_message(quality: int) -> Callable[[list[str]], list[int]]:
    """Return a runner that compresses each event on its own, as per-response compression does."""

    def run(texts: list[str]) -> list[int]:
        return [len(brotli.compress(text.encode(), quality=quality)) for text in texts]

    return run


def memory_kib(encoding: str, quality: int, lgwin: int, text: str, count: int = 500) -> float:
    """Return the resident memory of one live encoder that has sent one event, in KiB."""
    process = psutil.Process()
    gc.collect()
    before: int = process.memory_info().rss
    encoders = [StreamEncoder(encoding, quality=quality, lgwin=lgwin) for _ in range(count)]
    for encoder in encoders:
        encoder.encode(text)
    after: int = process.memory_info().rss
    del encoders
    return (after - before) / count / 1024


def main() -> None:
    """Print one table row per configuration."""
    texts = events()
    raw = sum(len(t.encode()) for t in texts) / len(texts)
    print(f"{EVENTS} events, {raw:.0f} B/event raw\n")
    configs: list[tuple[str, Callable[[list[str]], list[int]], tuple[str, int, int] | None]] = []
    for quality in (3, 4, 5, 6):
        for lgwin in (16, 18, 22):
            configs.append(
                (
                    f"brotli q{quality} lgwin{lgwin}",
                    streaming(quality, lgwin),
                    ("br", quality, lgwin),
                )
            )
    configs.append(("streaming gzip -6", streaming(5, 16, "gzip"), ("gzip", 5, 16)))
    configs.append(("per-message brotli q5", per_message(5), None))
    configs.append(("per-message brotli q11", per_message(11), None))
    print(f"{'config':24} {'first B':>8} {'B/event':>8} {'ratio':>7} {'µs/event':>9} {'KiB/conn':>9}")
    for name, run, mem in configs:
        best = float("inf")
        for _ in range(RUNS):
            start = time.perf_counter()
            sizes = run(texts)
            best = min(best, time.perf_counter() - start)
        steady = sum(sizes[1:]) / (len(sizes) - 1)
        kib = f"{memory_kib(*mem, texts[0]):.0f}" if mem else "-"
        print(f"{name:24} {sizes[0]:8d} {steady:8.1f} {raw / steady:6.0f}x {best / len(texts) * 1e6:9.1f} {kib:>9}")


if __name__ == "__main__":
    main()
