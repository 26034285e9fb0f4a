"""Print gameframe's ratios against the peers measured in the same peerbench runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def level(rows: list[dict[str, Any]], r: int, p: int, h: int) -> dict[str, Any] | None:
    for row in rows:
        if (row["rooms"], row["players"], row["hz"]) == (r, p, h) and "error" not in row:
            return row
    return None


def efficiency(result: dict[str, Any], name: str, r: int, p: int, h: int) -> float | None:
    row = level(result["relay"].get(name, []), r, p, h)
    return row["deliveries_per_cpu_s"] if row else None


def sustainable(result: dict[str, Any], name: str, players: int) -> float | None:
    ok = [
        row for row in result["relay"].get(name, [])
        if row["players"] == players and row.get("pass")
    ]
    return max((row["deliveries_per_s"] for row in ok), default=None)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def fmt(value: float | None) -> str:
    return f"{value:,.0f}" if value else "-"


def report(path: Path, title: str, ours: str, peers: list[str]) -> None:
    if not path.exists():
        return
    result = json.loads(path.read_text())
    print(f"\n## {title} ({result['date_utc']}, {path})")
    for lv in ((50, 10, 10), (4, 50, 10)):
        mine = efficiency(result, ours, *lv)
        cells = [f"{ours} {fmt(mine)} del/CPU-s"]
        for peer in peers:
            theirs = efficiency(result, peer, *lv)
            cells.append(f"{peer} {fmt(theirs)} ({ratio(mine, theirs)})")
        print(f"- @{lv[0]}x{lv[1]}x{lv[2]}: " + ", ".join(cells))
    for players in (10, 50):
        mine = sustainable(result, ours, players)
        cells = [f"{ours} {fmt(mine)}/s"]
        for peer in peers:
            theirs = sustainable(result, peer, players)
            cells.append(f"{peer} {fmt(theirs)}/s ({ratio(mine, theirs)})")
        print(f"- max sustainable P={players}: " + ", ".join(cells))
    for name, idle in result.get("idle", {}).items():
        print(f"- idle {name}: {idle.get('kb_per_conn')} KiB/conn at {idle.get('connected')} "
              f"connections, idle CPU {idle.get('idle_server_cpu_pct')}%")


def bytes_report(path: Path, baseline: str) -> None:
    """Bytes per delivery of each adapter at each level (bench/_bytes.js wrote them)."""
    if not path.exists():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(f"\n## bytes per delivery, the bytes the load generator read ({path})")
    levels = sorted({(r["rooms"], r["players"], r["hz"]) for r in rows}, key=lambda lv: lv[0] * lv[1] ** 2)
    for lv in levels:
        at = {r["adapter"]: r for r in rows if (r["rooms"], r["players"], r["hz"]) == lv and r["deliveries"]}
        base = at.get(baseline)
        cells = []
        for name, r in at.items():
            per = r["bytes"] / r["deliveries"]
            vs = f" ({per / (base['bytes'] / base['deliveries']):.2f}x {baseline})" if base and name != baseline else ""
            cells.append(f"{name} {per:.1f} B{vs}")
        print(f"- @{lv[0]}x{lv[1]}x{lv[2]}: " + ", ".join(cells))


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("results"))
    relay = results / "relay" / "latest.json"
    report(relay, "relay", "gameframe", ["asyncio-seed", "node-relay"])
    report(relay, "relay, --flush-interval 20", "gameframe-batched", ["asyncio-seed", "node-relay"])
    state = results / "state" / "latest.json"
    report(state, "state sync", "gameframe-state", ["colyseus-state"])
    report(state, "state sync, compact patches", "gameframe-state-compact", ["gameframe-state", "colyseus-state"])
    bytes_report(results / "state" / "bytes.jsonl", "gameframe-state")
    ws = results / "ws" / "latest.json"
    report(ws, "WebSocket relay vs TCP", "gameframe-ws", ["gameframe"])
    report(ws, "WebSocket relay vs TCP, --flush-interval 20", "gameframe-ws-batched", ["gameframe-batched"])


if __name__ == "__main__":
    main()
