"""Incoming WebSocket frames: gameframe's FrameReader beside wsproto (Twisted's parser), in one run.

    python bench/wsparse.py [--frames 1000] [--size 70]

Prints the CPU per message of each (best of 7) and the ratio; one frame per read,
as a game client's moves usually arrive.
"""

from __future__ import annotations

import argparse
import os
import timeit

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from gameframe._wsframes import FrameReader


def client_frame(payload: bytes) -> bytes:
    """A masked, final text frame (under 126 bytes), as a browser sends it."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + key + masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=70, help="bytes per message, under 126")
    args = parser.parse_args()
    frames = []
    for n in range(args.frames):
        message = b'{"action":"move","c":"c%d","x":%d,"y":%d,"t":1}' % (n, n, n)
        frames.append(client_frame(message.ljust(args.size)))

    def with_wsproto() -> list[str]:
        conn = Connection(ConnectionType.SERVER)
        out: list[str] = []
        for data in frames:
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, TextMessage) and event.message_finished:
                    out.append(event.data)
        return out

    def with_reader() -> list[str]:
        out: list[str] = []
        reader = FrameReader(65536, lambda text: out.append(text) is None, lambda raw: True)
        for data in frames:
            reader.feed(data)
        return out

    assert with_wsproto() == with_reader()
    times = {}
    for name, run in (("wsproto", with_wsproto), ("FrameReader", with_reader)):
        times[name] = min(timeit.repeat(run, number=5, repeat=7)) / 5 / len(frames)
        print(f"{name:12} {times[name] * 1e6:6.2f} µs per message")
    print(f"FrameReader costs {times['FrameReader'] / times['wsproto']:.3f}x wsproto")


if __name__ == "__main__":
    main()
