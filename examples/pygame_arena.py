"""A pygame client for the arena demo: every player is a dot; click to walk there.

Start a server (`twistd -n gameframe`), then run one or more of these:

    python examples/pygame_arena.py --host 127.0.0.1 --port 7000

Headless, for tests and bots (no window, automatic moves, then leave):

    SDL_VIDEODRIVER=dummy python examples/pygame_arena.py --frames 60 --auto
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import pygame

from gameframe.client import ClientError, Disconnected, GameClient

WIDTH, HEIGHT = 800, 600
BACKGROUND = (24, 26, 33)
ME = (255, 196, 0)
OTHERS = (80, 170, 255)
AWAY = (90, 90, 100)
TEXT = (220, 220, 230)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Play the gameframe arena demo.")
    parser.add_argument("--host", default="127.0.0.1", help="server host")
    parser.add_argument("--port", type=int, default=7000, help="server TCP port")
    parser.add_argument(
        "--frames", type=int, default=0, help="quit after N frames (0: run until closed)"
    )
    parser.add_argument(
        "--auto", action="store_true", help="move by itself (walks a circle)"
    )
    parser.add_argument("--fps", type=int, default=60, help="frames per second")
    parser.add_argument(
        "--room-id", help="join this arena room (e.g. one open in a browser); default: any"
    )
    parser.add_argument("--screenshot", help="save the last frame to this PNG file")
    return parser.parse_args(argv)


def auto_target(frame: int) -> tuple[int, int]:
    """Where the automatic player heads at this frame: around a circle."""
    angle = frame / 30.0
    return (int(WIDTH / 2 + 200 * math.cos(angle)), int(HEIGHT / 2 + 150 * math.sin(angle)))


def draw(screen: pygame.Surface, font: pygame.font.Font, client: GameClient) -> None:
    """Draw every avatar of the mirrored arena state."""
    screen.fill(BACKGROUND)
    tree: Any = client.state.state
    players = tree.get("players", {}) if isinstance(tree, dict) else {}
    for player_id, avatar in players.items():
        position = (int(avatar["x"]), int(avatar["y"]))
        if player_id == client.player_id:
            color = ME
        elif avatar.get("connected", True):
            color = OTHERS
        else:
            color = AWAY
        pygame.draw.circle(screen, color, position, 12)
        label = font.render(player_id, True, TEXT)
        screen.blit(label, (position[0] - label.get_width() // 2, position[1] + 14))
    status = f"room {client.room_id}  players {len(players)}  you {client.player_id}"
    screen.blit(font.render(status, True, TEXT), (8, 8))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pygame.display.init()  # no pygame.init(): the arena needs no sound
    pygame.font.init()
    try:
        screen = pygame.display.set_mode((WIDTH, HEIGHT))
        pygame.display.set_caption("gameframe arena")
        font = pygame.font.Font(None, 20)
        try:
            client = GameClient.connect(args.host, args.port, timeout=5)
        except OSError as e:
            print(f"cannot connect to {args.host}:{args.port}: {e}", file=sys.stderr)
            return 2
        try:
            if args.room_id:
                joined = client.join(args.room_id)
            else:
                joined = client.join_or_create("arena")
        except ClientError as e:
            print(f"cannot join the arena: {e}", file=sys.stderr)
            return 1
        print(f"joined {joined['room_id']} as {client.player_id}", flush=True)
        moves = run(screen, font, client, args)
        if args.screenshot:
            pygame.image.save(screen, args.screenshot)
        if not client.connected:
            return 1
        client.leave()
        client.close()
        print(f"left after {moves} moves", flush=True)
        return 0
    except Disconnected as e:
        print(f"disconnected: {e}", file=sys.stderr)
        return 1
    finally:
        pygame.quit()


def run(
    screen: pygame.Surface,
    font: pygame.font.Font,
    client: GameClient,
    args: argparse.Namespace,
) -> int:
    """The game loop: poll the network, handle input, draw. The number of moves sent."""
    clock = pygame.time.Clock()
    frame = moves = 0
    while not args.frames or frame < args.frames:
        # While the server restarts the client takes its seat back by itself;
        # nothing can be sent meanwhile.
        away = client.reconnecting
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                return moves
            if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1 and not away:
                client.send("move", x=event.pos[0], y=event.pos[1])
                moves += 1
        if args.auto and frame % 10 == 0 and not away:
            x, y = auto_target(frame)
            client.send("move", x=x, y=y)
            moves += 1
        for message in client.poll():
            if message["action"] == "error":
                print(f"server: {message['code']}: {message['message']}", file=sys.stderr)
        if not client.connected and not client.reconnecting:
            print(f"disconnected ({client.close_code})", file=sys.stderr)
            return moves
        draw(screen, font, client)
        pygame.display.flip()
        clock.tick(args.fps)
        frame += 1
    return moves


if __name__ == "__main__":
    sys.exit(main())
