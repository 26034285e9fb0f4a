"""The live terminal display (rich): players, message rates, request latency and errors, redrawn as the run goes."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gameframe.loadtest.stats import Histogram, Stats

__all__ = ["Dashboard"]


def _ms(microseconds: int | float | None) -> str:
    if microseconds is None:
        return "–"
    ms = microseconds / 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:,.0f} ms"


def _latency(histogram: Histogram, what: str = "replies") -> Text:
    if not histogram.count:
        return Text(f"no {what} yet", style="dim")
    return Text.assemble(
        "p50 ", (_ms(histogram.percentile(50)), "bold"),
        "   p99 ", (_ms(histogram.percentile(99)), "bold"),
        "   max ", _ms(histogram.max),
        (f"   ({histogram.count:,} {what})", "dim"),
    )


def _count(label: str, value: int, bad: bool = False) -> Text:
    style = "bold red" if bad and value else "bold"
    return Text.assemble(f"{label} ", (f"{value:,}", style))


def _joined(*parts: Text) -> Text:
    return Text("   ").join(parts)


class _Rates:
    """Per-second rates between two snapshots of the same counters."""

    def __init__(self) -> None:
        self._last: Stats | None = None

    def update(self, now: Stats, average: bool = False) -> dict[str, float]:
        """Since the previous update, or (C{average}) since the start."""
        last = self._last
        self._last = now.copy()
        if average or last is None or now.elapsed <= last.elapsed:
            seconds = now.elapsed
            last = Stats()
        else:
            seconds = now.elapsed - last.elapsed
        if seconds <= 0:
            return {"in": 0.0, "out": 0.0, "requests": 0.0}
        return {
            "in": (now.messages_in - last.messages_in) / seconds,
            "out": (now.messages_out - last.messages_out) / seconds,
            "requests": (now.requests - last.requests) / seconds,
        }


class Dashboard:
    """
    Draws the run on a terminal (stderr, so stdout stays for the JSON
    summary). Call L{start}, then L{update} with fresh stats every half
    second or so (there is no thread: the caller's timer drives it), then
    L{stop}.

    @param run: what was asked: C{target}, C{room}, C{players}, C{rooms},
        C{processes}, C{duration}, C{ramp}.
    """

    def __init__(self, run: Mapping[str, Any], console: Console | None = None) -> None:
        self._run = run
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._rates = _Rates()
        self._part_rates: list[_Rates] = []

    def start(self) -> None:
        self._live = Live(
            Text("starting…"), console=self.console, auto_refresh=False, transient=False
        )
        self._live.start()

    def update(self, total: Stats, parts: list[Stats]) -> None:
        if self._live is not None:
            self._live.update(self.render(total, parts), refresh=True)

    def stop(self, total: Stats | None = None, parts: list[Stats] | None = None) -> None:
        if self._live is None:
            return
        if total is not None:
            self._live.update(self.render(total, parts or [], final=True), refresh=True)
        self._live.stop()
        self._live = None

    def render(self, total: Stats, parts: list[Stats], final: bool = False) -> RenderableType:
        """The whole display for these stats (the rates are since the previous call)."""
        run = self._run
        rates = self._rates.update(total, average=final)
        processes = run.get("processes", 1)
        header = Text.assemble(
            ("gameframe-loadtest ", "bold cyan"),
            (str(run.get("target", "")), "bold"),
            f"   room {run.get('room')}   {run.get('players')} players in "
            f"{run.get('rooms')} rooms   {processes} process{'es' if processes != 1 else ''}",
        )
        duration = float(run.get("duration", 0)) or 1.0
        elapsed = min(total.elapsed, duration)
        progress = Table.grid(padding=(0, 2))
        progress.add_row(
            ProgressBar(total=duration, completed=elapsed, width=40),
            Text(
                f"{elapsed:.1f} / {duration:.1f} s   (ramp {run.get('ramp', 0):g} s)"
                + ("   done, rates averaged" if final else ""),
                style="dim",
            ),
        )

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="cyan", justify="right")
        grid.add_column()
        if final:
            # Everyone has left by now: show how many ever made it.
            connected, seated = total.connected, _count("joined", total.joined)
        else:
            connected, seated = total.connected_now, _count("in rooms", total.in_room_now)
        grid.add_row(
            "players",
            _joined(
                Text.assemble(
                    "connected ", (f"{connected:,}", "bold green"), f"/{total.players:,}"
                ),
                seated,
                _count("connecting", total.connecting),
                _count("failed", total.failed, bad=True),
                _count("disconnected", total.disconnected, bad=True),
            ),
        )
        grid.add_row(
            "messages",
            _joined(
                Text.assemble("in ", (f"{rates['in']:,.0f}/s", "bold")),
                Text.assemble("out ", (f"{rates['out']:,.0f}/s", "bold")),
                Text(
                    f"({total.messages_in:,} in, {total.messages_out:,} out)", style="dim"
                ),
            ),
        )
        grid.add_row(
            "requests",
            _joined(
                Text.assemble((f"{rates['requests']:,.0f}/s", "bold")),
                _count("answered", total.replies),
                _count("pending", total.pending),
                _count("errors", total.request_errors, bad=True),
                _count("timeouts", total.timeouts, bad=True),
            ),
        )
        grid.add_row("latency", _latency(total.latency))
        grid.add_row("join", _latency(total.join_latency))
        for name in sorted(total.measures):  # the players' own (SimulatedPlayer.record)
            grid.add_row(name, _latency(total.measures[name], "values"))
        if total.errors or total.disconnects:
            problems = Table.grid(padding=(0, 2))
            for code, n in sorted(total.errors.items(), key=lambda item: -item[1]):
                problems.add_row(Text(code, style="red"), f"{n:,}")
            for code, n in sorted(total.disconnects.items(), key=lambda item: -item[1]):
                problems.add_row(Text(f"disconnect: {code}", style="red"), f"{n:,}")
            grid.add_row("errors", problems)
        else:
            grid.add_row("errors", Text("none", style="green"))

        body: list[RenderableType] = [header, progress, grid]
        if len(parts) > 1:
            body.append(self._processes(parts, final))
        return Group(*body)

    def _processes(self, parts: list[Stats], final: bool) -> Table:
        while len(self._part_rates) < len(parts):
            self._part_rates.append(_Rates())
        table = Table(box=None, padding=(0, 2), header_style="cyan")
        seated = "joined" if final else "in rooms"
        for name in ("process", "players", "connected", seated, "in/s", "out/s", "p99", "errors"):
            table.add_column(name, justify="right")
        for number, part in enumerate(parts):
            rates = self._part_rates[number].update(part, average=final)
            errors = sum(part.errors.values()) + part.disconnected
            table.add_row(
                str(number),
                f"{part.players:,}",
                f"{part.connected if final else part.connected_now:,}",
                f"{part.joined if final else part.in_room_now:,}",
                f"{rates['in']:,.0f}",
                f"{rates['out']:,.0f}",
                _ms(part.latency.percentile(99)),
                Text(f"{errors:,}", style="red" if errors else ""),
            )
        return table
