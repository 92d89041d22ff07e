"""Run the soak and fault suite, then rewrite RELIABILITY.md from every result on disk.

    python -m soak.run                  # the full suite (make soak), ≤ 25 minutes
    python -m soak.run --quick          # each item at small scale (what make test runs)
    python -m soak.run --only kill9,hub_liveness

Each item is a module ``soak/<item>.py`` with ``run(quick=False) -> dict`` (see
``soak/common.py`` ``result()`` for the shape). Results land in ``soak/out/<item>.json``; the
report is rebuilt from all JSON present, so re-running one item refreshes only its row. An
item that crashes is recorded as not met, with its traceback, and the others still run.
The exit status is 1 if any item run now missed its target.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from soak import common

ITEMS = ("mixed", "kill9", "hub_liveness", "disconnect_storm", "slow_clients", "bad_input")
OUT = common.ROOT / "soak" / "out"
REPORT = common.ROOT / "RELIABILITY.md"


def run_item(item: str, quick: bool) -> dict[str, Any] | None:
    """Run one item; its result with run facts added, or None when its module is missing."""
    try:
        module = importlib.import_module(f"soak.{item}")
    except ModuleNotFoundError as exc:
        if exc.name != f"soak.{item}":
            raise
        print(f"soak: {item}: soak/{item}.py is not there; skipped", flush=True)
        return None
    print(f"soak: {item}{' (quick)' if quick else ''} ...", flush=True)
    started = time.monotonic()
    try:
        result = dict(module.run(quick=quick))
    except Exception as exc:  # one broken item must not hide the others' figures
        result = common.result(
            item,
            title=item,
            figure=f"crashed: {type(exc).__name__}: {exc}"[:200],
            target="runs to the end",
            met=False,
            numbers={},
            details="```\n" + traceback.format_exc()[-3000:] + "```",
        )
    result.update(quick=quick, seconds=round(time.monotonic() - started, 1), machine=common.machine())
    print(f"soak: {item}: {'met' if result['met'] else 'NOT MET'}: {result['figure']}", flush=True)
    return result


def save(result: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{result['item']}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load() -> list[dict[str, Any]]:
    """Every result on disk, in the suite's order (unknown items last, by name)."""
    found = {}
    for path in sorted(OUT.glob("*.json")) if OUT.exists() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and "item" in data:
            found[data["item"]] = data
    order = {name: i for i, name in enumerate(ITEMS)}
    return sorted(found.values(), key=lambda r: (order.get(r["item"], len(ITEMS)), r["item"]))


def render(results: list[dict[str, Any]]) -> str:
    """RELIABILITY.md: the machine, a summary table, then each item's details."""
    lines = [
        "# Reliability",
        "",
        "What orion does under sustained load and faults: the soak suite's figures, written by",
        "`python -m soak.run` (`make soak`; each item is `soak/<item>.py`, its short version in",
        "`tests/reliability/` runs in `make test`). Re-run to refresh; do not edit by hand.",
        "",
    ]
    if not results:
        return "\n".join([*lines, "No results yet: run `make soak`.", ""])
    newest = max(results, key=lambda r: r.get("machine", {}).get("date", ""))
    m = newest.get("machine", {})
    lines += [
        f"Machine: {m.get('cores', '?')} cores, {m.get('ram_gb', '?')} GB RAM, Linux {m.get('kernel', '?')}, "
        f"Python {m.get('python', '?')}. Latest run: {m.get('date', '?')}.",
        "",
    ]
    if any(r.get("quick") for r in results):
        lines += ["Rows marked *(quick)* come from `--quick` runs (small scale), not the full suite.", ""]
    lines += ["| item | figure | target | met |", "|---|---|---|---|"]
    for r in results:
        quick = " *(quick)*" if r.get("quick") else ""
        lines.append(f"| [{r['item']}](#{r['item']}){quick} | {_cell(r['figure'])} | {_cell(r['target'])} | "
                     f"{'yes' if r['met'] else '**no**'} |")  # fmt: skip
    for r in results:
        facts = r.get("machine", {})
        lines += [
            "",
            f"## {r['item']}",
            "",
            f"**{r['title']}.** {r['figure']}. Target: {r['target']} — {'met' if r['met'] else '**not met**'}.",
            "",
            r.get("details", "").strip(),
            "",
            f"*Run {facts.get('date', '?')}{', quick' if r.get('quick') else ''}, {r.get('seconds', '?')} s; "
            f"raw numbers in `soak/out/{r['item']}.json`.*",
        ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each item at small scale")
    parser.add_argument("--only", default="", help=f"comma-separated items among: {', '.join(ITEMS)}")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(ITEMS)
    unknown = [s for s in chosen if s not in ITEMS]
    if unknown:
        parser.error(f"unknown item(s) {', '.join(unknown)}; choose among {', '.join(ITEMS)}")
    started = time.monotonic()
    missed = []
    for item in chosen:
        result = run_item(item, args.quick)
        if result is None:
            continue
        save(result)
        if not result["met"]:
            missed.append(item)
        REPORT.write_text(render(load()), encoding="utf-8")  # after each item: a crash keeps the rest
    REPORT.write_text(render(load()), encoding="utf-8")
    print(f"soak: done in {time.monotonic() - started:.0f} s; {REPORT.name} rewritten"
          + (f"; NOT MET: {', '.join(missed)}" if missed else ""))  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
