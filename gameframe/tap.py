"""twistd plugin support: command-line Options and makeService (the only user of the global reactor)."""

from __future__ import annotations

import getopt
import os
import re
import socket
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Sequence, cast
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, FirstError, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IAddress, IListeningPort, IProtocolFactory, IReactorTime
from twisted.logger import Logger
from twisted.python import reflect, usage
from twisted.python.failure import Failure

from gameframe import _limits
from gameframe._limits import ConnectionGate, Limits, accept_fairly
from gameframe.protocol import DEFAULT_MAX_FRAME, DEFAULT_MAX_PENDING, GameFactory
from gameframe.room import Room
from gameframe.service import DEFAULT_RESTORE_GRACE, RoomService
from gameframe.store.open import Stores, open_stores, parse_store
from gameframe.logs import LOG_FORMATS, LoggedAs, json_observer
from gameframe.web import PingService, make_site
from gameframe.websocket import DEFAULT_PING_INTERVAL, WebSocketGameFactory

log = Logger()

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
# Where --admin-token is read from when it is not given (a token in argv shows in ps).
ADMIN_TOKEN_VARIABLE = "GAMEFRAME_ADMIN_TOKEN"
# How long past --shutdown-timeout the process waits for the last steps of a
# shutdown (closing connections, stopping ports) before it exits regardless.
SHUTDOWN_GRACE = 2.0
# How often a stopping server looks whether its connections have all closed.
CLOSE_POLL = 0.05
# Endpoint types whose connections are encrypted (the fast send path is off there).
TLS_ENDPOINT_TYPES = frozenset({"ssl", "tls"})


class StartupFailed(SystemExit, Exception):
    """
    The server cannot start: one line for the operator, exit status 1.

    An L{Exception}, so twistd removes its PID file and tells a daemonizing
    parent the message; a L{SystemExit} (with code 1), so the interpreter
    exits without printing a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def demo_rooms() -> dict[str, type[Room]]:
    """The built-in demo room types served when no --room is given."""
    from gameframe.demo import DEMO_ROOMS

    return dict(DEMO_ROOMS)


def _cwd_on_path() -> None:
    """The author's own modules, found in the current directory after installed ones."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _why(error: BaseException) -> str:
    """An import's failure as one line: the message, and where for an error in the module's code."""
    if isinstance(error, ImportError):
        return str(error)
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames and not isinstance(error, SyntaxError):  # a SyntaxError says where itself
        text += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return text


def _split(option: str, spec: str, target: str) -> tuple[str, str]:
    module_name, colon, attribute = target.partition(":")
    if not (colon and module_name and attribute):
        raise usage.UsageError(f"{option} wants module:name, not {spec!r}")
    return module_name, attribute


def _import(option: str, spec: str, module_name: str, attribute: str) -> object | None:
    """
    C{module_name.attribute} by L{reflect.namedAny}, L{None} if the module has
    no such name; a L{usage.UsageError} if the module cannot be imported.
    """
    _cwd_on_path()
    try:
        module = reflect.namedAny(module_name)
    except Exception as e:
        raise usage.UsageError(
            f"{option} {spec}: cannot import {module_name}: {_why(e)}"
        ) from None
    if not isinstance(module, ModuleType):
        raise usage.UsageError(f"{option} {spec}: {module_name} is not a module")
    try:
        found: object = reflect.namedAny(f"{module_name}.{attribute}")
    except (AttributeError, reflect.InvalidName):
        return None
    return found


def load_room(spec: str) -> tuple[str, type[Room]]:
    """Parse C{NAME=module:Class} and import the class."""
    name, sep, target = spec.partition("=")
    module_name, colon, class_name = target.partition(":")
    if not (sep and colon and name and module_name and class_name):
        raise usage.UsageError(f"--room wants NAME=module:Class, not {spec!r}")
    room_class = _import("--room", spec, module_name, class_name)
    if not (isinstance(room_class, type) and issubclass(room_class, Room)):
        found = f"no {class_name} there" if room_class is None else f"found {room_class!r}"
        raise usage.UsageError(
            f"--room {spec}: {module_name}.{class_name} is not a gameframe Room ({found})"
        )
    return name, room_class


def load_callable(option: str, spec: str) -> Callable[..., Any]:
    """Import the C{module:callable} an option names (C{--auth}, C{--placement})."""
    module_name, attribute = _split(option, spec, spec)
    found = _import(option, spec, module_name, attribute)
    if found is None:
        raise usage.UsageError(f"{option} {spec}: {module_name} has no {attribute}")
    if not callable(found):
        raise usage.UsageError(f"{option} {spec}: {module_name}.{attribute} is not callable")
    return cast(Callable[..., Any], found)


def load_authenticate(spec: str) -> Callable[[str], Any]:
    """Import the C{--auth module:callable} that checks a player's token."""
    return load_callable("--auth", spec)


# What gameframe.cluster.redis.RedisCluster.from_url connects to.
REDIS_SCHEMES = ("redis",)


def redis_url(value: str) -> str:
    """Check C{--redis} without connecting: C{redis://[[user]:password@]host[:port][/db]}."""
    wanted = f"--redis wants a URL like redis://127.0.0.1:6379/0, not {value!r}"
    try:
        url = urlsplit(value.strip())
        port = url.port  # a ValueError when not a number in 0-65535
    except ValueError:
        raise usage.UsageError(wanted) from None
    if url.scheme not in REDIS_SCHEMES or not url.hostname:
        raise usage.UsageError(wanted)
    if port == 0:
        raise usage.UsageError(f"--redis {value!r}: port 0 is not a Redis port")
    database = url.path.strip("/")
    if database and not database.isdigit():
        raise usage.UsageError(
            f"--redis {value!r}: the database after the / is a number, not {database!r}"
        )
    return value.strip()


# A node's name goes into logs, listings, metrics and the keys of the shared store.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def default_node_name() -> str:
    """This process's node name when --node is not given: host name and PID."""
    return f"{socket.gethostname()}-{os.getpid()}"


def node_name(value: str) -> str:
    """Check C{--node}: letters, digits, '.', '_' and '-', at most 64."""
    if not NODE_NAME.match(value):
        raise usage.UsageError(
            f"--node wants up to 64 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), not {value!r}"
        )
    return value


def frame_size(value: str) -> int:
    """Coerce C{--max-frame}: a whole number of bytes, at least 64."""
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"--max-frame wants a number of bytes, not {value!r}") from None
    if size < 64:
        raise ValueError("--max-frame must be at least 64 bytes")
    return size


frame_size.coerceDoc = "At least 64."  # type: ignore[attr-defined]


def _number(
    option: str, kind: type[int] | type[float], what: str, minimum: float, above: bool = False
) -> Callable[[str], Any]:
    """A coercer for a numeric option: C{kind}, at least (or, C{above}, more than) C{minimum}."""

    def coerce(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"--{option} wants {what}, not {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"--{option} wants {what}, not {value!r}")
        if number < minimum or (above and number == minimum):
            bound = "more than" if above else "at least"
            raise ValueError(f"--{option} must be {bound} {minimum:g}, not {value!r}")
        return number

    bound = "More than" if above else "At least"
    coerce.coerceDoc = f"{bound} {minimum:g}."  # type: ignore[attr-defined]
    return coerce


# Stands in for the reactor while --port is checked at parse time.
_NO_REACTOR: Any = object()
_ENFORCEMENT = "Parameter type enforcement failed: "


def check_endpoint(option: str, description: str) -> None:
    """
    Parse an endpoint string without listening; a L{usage.UsageError}
    naming the option for a bad one (a bare port number included).
    """
    if description.strip().isdigit():
        raise usage.UsageError(
            f"--{option} {description!r} is not an endpoint string: "
            f"did you mean tcp:{description.strip()}?"
        )
    try:
        # Parse only (no listening yet); the reactor is not used for that.
        endpoint = endpoints.serverFromString(_NO_REACTOR, description)
    except IndexError:
        if description.strip().lower().startswith("systemd:"):
            raise usage.UsageError(
                f"--{option} {description!r}: systemd passed no socket at that index "
                "(start the server through its .socket unit)"
            ) from None
        raise usage.UsageError(f"--{option} {description!r}: bad endpoint string") from None
    except Exception as e:
        raise usage.UsageError(f"--{option} {description!r}: {e}") from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise usage.UsageError(
            f"--{option} {description!r}: port {port} is out of range (0-65535)"
        )


# The hidden option --workers' parent gives each worker: which inherited
# file descriptors are the listening sockets of --port and --web.
WORKER_FDS = "inherited-fds"
HIDDEN_OPTIONS = frozenset({WORKER_FDS})
# Endpoint types whose listening socket the workers can share (see gameframe.workers).
SHAREABLE_ENDPOINT_TYPES = frozenset({"tcp", "tcp6", "ssl"})


def endpoint_type(description: str) -> str:
    return description.split(":", 1)[0].strip().lower()


def check_shareable(option: str, description: str) -> None:
    """--workers shares TCP sockets (TLS included): refuse other endpoint types in one line."""
    if endpoint_type(description) not in SHAREABLE_ENDPOINT_TYPES:
        raise usage.UsageError(
            f"--workers shares tcp:, tcp6: and ssl: endpoints, not --{option} {description!r}"
        )


def inherited_fds(value: str, options: Any) -> dict[str, int]:
    """Parse the hidden C{--inherited-fds port=FD,web=FD}: option name → file descriptor."""
    found: dict[str, int] = {}
    for item in value.split(","):
        name, equals, number = item.partition("=")
        if not (equals and name in ("port", "web") and number.isdigit() and int(number) > 2):
            raise usage.UsageError(f"--{WORKER_FDS} wants port=FD,web=FD, not {value!r}")
        if options[name] is None:
            raise usage.UsageError(f"--{WORKER_FDS} {value!r}: --{name} is none")
        found[name] = int(number)
    return found


class Options(usage.Options):
    """C{twistd gameframe} options."""

    synopsis = "[options]"
    longdesc = (
        "Serve gameframe rooms. Players connect over TCP (JSON Lines) and "
        "WebSocket (/ws on the web endpoint, which also serves the browser "
        "demo and GET /rooms). With no --room, the built-in demo rooms are served. "
        "Endpoints are Twisted endpoint strings: tcp:7000, "
        "ssl:7443:privateKey=key.pem:certKey=cert.pem, unix:/run/game.sock, "
        "systemd:domain=INET:index=0."
    )
    optFlags = [
        [
            "require-auth",
            None,
            "Players must authenticate (with --auth) before anything but ping.",
        ],
    ]
    optParameters = [
        ["port", "p", "tcp:7000", "TCP endpoint for players (an endpoint string)."],
        [
            "max-frame",
            None,
            DEFAULT_MAX_FRAME,
            "Largest message a client may send, in bytes.",
            frame_size,
        ],
        [
            "max-pending",
            None,
            DEFAULT_MAX_PENDING,
            "Bytes that may wait unsent for one client that is not reading "
            "before it is dropped (slow_client): the memory one such client "
            "may cost. At least 65536.",
            _number("max-pending", int, "a whole number of bytes", 65536),
        ],
        [
            "web",
            None,
            "tcp:8080",
            "HTTP endpoint for WebSocket players (/ws), the browser demo, /rooms, "
            "/healthz, /readyz, /metrics and, with --admin-token, /admin and /monitor; "
            "'none' turns it off.",
        ],
        [
            "flush-interval",
            None,
            None,
            "Milliseconds between sends to each player, and in a cluster between "
            "batches to each other node (0: at the end of every reactor turn). More "
            "batches more messages per send, for more latency. Not given: at the end "
            "of every turn while the server is idle, at most every 4 ms once that "
            "would save 2000 sends a second.",
            float,
        ],
        [
            "ws-ping",
            None,
            DEFAULT_PING_INTERVAL,
            "Seconds between pings to WebSocket players; one unanswered ping "
            "drops the player (0: no pings).",
            float,
        ],
        [
            "rate",
            None,
            _limits.DEFAULT_RATE,
            "Messages per second each connection may send, sustained "
            "(0: no limit). Above it: error rate_limited; for long: flooding.",
            _number("rate", float, "messages per second", 0),
        ],
        [
            "burst",
            None,
            _limits.DEFAULT_BURST,
            "Messages a connection may send at once above --rate.",
            _number("burst", int, "a whole number of messages", 1),
        ],
        [
            "frame-timeout",
            None,
            _limits.DEFAULT_FRAME_TIMEOUT,
            "Seconds a message may take from its first byte to its end "
            "(slower: frame_timeout; 0: no limit).",
            _number("frame-timeout", float, "seconds", 0),
        ],
        [
            "idle-timeout",
            None,
            _limits.DEFAULT_IDLE_TIMEOUT,
            "Seconds a connection may send no byte before it is closed "
            "(idle_timeout; 0: no limit).",
            _number("idle-timeout", float, "seconds", 0),
        ],
        [
            "max-connections",
            None,
            _limits.DEFAULT_MAX_CONNECTIONS,
            "Connections open at once, all endpoints together "
            "(more get too_many_connections; 0: no limit).",
            _number("max-connections", int, "a whole number of connections", 0),
        ],
        [
            "max-per-address",
            None,
            _limits.DEFAULT_MAX_PER_ADDRESS,
            "Connections open at once from one IP address (0: no limit).",
            _number("max-per-address", int, "a whole number of connections", 0),
        ],
        [
            "auth",
            None,
            None,
            "module:callable that checks a player's token (the lobby action "
            "authenticate): returns the user (or a Deferred of it), raises to refuse.",
        ],
        [
            "shutdown-timeout",
            None,
            DEFAULT_SHUTDOWN_TIMEOUT,
            "Seconds rooms get to finish (on_shutdown) when the server is told "
            "to stop (SIGTERM, SIGINT); the process exits soon after, regardless.",
            _number("shutdown-timeout", float, "seconds", 0, above=True),
        ],
        [
            "log-format",
            None,
            "text",
            "The log's format: 'text' (twistd's) or 'json' (one JSON object per line: "
            "time, level, namespace, message, failure), for log shippers.",
        ],
        [
            "store",
            None,
            None,
            "Where rooms are saved so games survive a restart, a deploy or (with "
            "redis) a dead node, and where player storage is kept: sqlite:PATH (one "
            "machine) or redis (the --redis server). Without it nothing is saved and "
            "player storage is in memory (lost on restart).",
        ],
        [
            "restore-grace",
            None,
            DEFAULT_RESTORE_GRACE,
            "Seconds every seat of a restored room is held for its player's "
            "reconnect, whatever the room's own reconnect window.",
            _number("restore-grace", float, "seconds", 0),
        ],
        [
            "admin-token",
            None,
            None,
            "Bearer token of the admin API (/admin) and the /monitor page on the web "
            "endpoint (default: $GAMEFRAME_ADMIN_TOKEN; neither: both answer 404).",
        ],
        [
            "redis",
            None,
            None,
            "Redis URL of a cluster, redis://[[user]:password@]host[:port][/db]: the "
            "nodes sharing it act as one server. Without it: one process, no Redis.",
        ],
        [
            "node",
            None,
            None,
            "This node's name in logs, listings and metrics "
            "(default: host name-PID; with --workers, NAME-w1, NAME-w2, ...).",
        ],
        [
            "placement",
            None,
            None,
            "module:callable choosing the node for a new room (default: the "
            "least-loaded node, preferring the creator's). Needs --redis.",
        ],
        [
            "workers",
            None,
            1,
            "Worker processes sharing --port and --web on this machine (needs "
            "--redis); the parent process only supervises and restarts them.",
            _number("workers", int, "a whole number of processes", 1),
        ],
        [
            WORKER_FDS,
            None,
            None,
            "(internal) The listening sockets a worker inherits from --workers' "
            "parent: port=FD,web=FD.",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["rooms"] = {}
        self["allowed-origins"] = []
        self["authenticate"] = None
        self["placement-policy"] = None
        self["store-spec"] = None
        self["inherited"] = {}
        self.argv: list[str] = []

    def getUsage(self, width: int | None = None) -> str:
        """The usage text, without the options only --workers' parent passes."""
        shown = self.longOpt
        self.longOpt = [name for name in shown if name.rstrip("=") not in HIDDEN_OPTIONS]
        try:
            return super().getUsage(width)
        finally:
            self.longOpt = shown

    def given(self) -> list[tuple[str, str]]:
        """
        The options as given on the command line, in order, each with its
        full name (C{--port}, C{-p}; getopt expands abbreviations) and value
        (C{""} for a flag): what --workers passes on to its workers.
        """
        pairs, _ = getopt.getopt(self.argv, self.shortOpt, self.longOpt)
        return pairs

    def opt_allow_origin(self, origin: str) -> None:
        """Accept WebSocket connections from browsers on this origin, e.g. https://game.example (repeatable; default: any origin)."""
        self["allowed-origins"].append(origin)

    def opt_room(self, spec: str) -> None:
        """Serve a room type: NAME=module:Class (repeatable)."""
        name, room_class = load_room(spec)
        self["rooms"][name] = room_class

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse; under twistd, a mistake is one line on stderr and exit
        status 1 (C{--help} lists the options), not the whole usage text.
        """
        self.argv = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            message = str(e).removeprefix(_ENFORCEMENT)
            if self.parent is None:
                raise usage.UsageError(message) from None
            raise SystemExit(
                f"twistd gameframe: {message} (twistd gameframe --help lists the options)"
            ) from None

    def postOptions(self) -> None:
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format is one of {', '.join(LOG_FORMATS)}, not {self['log-format']!r}"
            )
        if self["web"].lower() == "none":
            self["web"] = None
        for name in ("port", "web"):
            if self[name] is not None:
                if self["workers"] > 1:
                    check_shareable(name, self[name])
                check_endpoint(name, self[name])
        if self["flush-interval"] is not None and self["flush-interval"] < 0:
            raise usage.UsageError("--flush-interval must be 0 or more milliseconds")
        if self["ws-ping"] < 0:
            raise usage.UsageError("--ws-ping must be 0 or more seconds")
        if self["auth"] is not None:
            self["authenticate"] = load_authenticate(self["auth"])
        if self["require-auth"] and self["authenticate"] is None:
            raise usage.UsageError(
                "--require-auth needs --auth module:callable to check the tokens"
            )
        if not self["rooms"]:
            self["rooms"] = demo_rooms()
        if self["admin-token"] is None:
            self["admin-token"] = os.environ.get(ADMIN_TOKEN_VARIABLE) or None
        elif not self["admin-token"].strip():
            raise usage.UsageError("--admin-token must not be empty")
        if self["redis"] is not None:
            self["redis"] = redis_url(self["redis"])
        if self["store"] is not None:
            try:
                self["store-spec"] = parse_store(self["store"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            if self["store-spec"].kind == "redis" and self["redis"] is None:
                raise usage.UsageError("--store redis keeps rooms on the cluster's Redis: give --redis too")
        if self["node"] is None:
            self["node"] = default_node_name()
        else:
            node_name(self["node"])
        if self["placement"] is not None:
            if self["redis"] is None:
                raise usage.UsageError("--placement needs --redis: it places rooms across nodes")
            self["placement-policy"] = load_callable("--placement", self["placement"])
        if self["workers"] > 1:
            if self["redis"] is None:
                raise usage.UsageError("--workers needs --redis: workers share rooms through it")
            if self[WORKER_FDS] is not None:
                raise usage.UsageError(f"--{WORKER_FDS} is for the workers --workers starts")
        if self[WORKER_FDS] is not None:
            self["inherited"] = inherited_fds(self[WORKER_FDS], self)

    def limits(self) -> Limits:
        """The per-connection and per-server limits these options set."""
        return Limits(
            rate=self["rate"],
            burst=self["burst"],
            frame_timeout=self["frame-timeout"],
            idle_timeout=self["idle-timeout"],
            max_connections=self["max-connections"],
            max_per_address=self["max-per-address"],
        )


def _describe(address: IAddress) -> str:
    """host:port, [v6]:port or a UNIX socket's path."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return str(name) if name else str(address)


class Listener(StreamServerEndpointService):
    """
    Listens on one endpoint string. Failing to listen is a L{StartupFailed}
    (one line: which option, which endpoint, why); C{listening} fires with
    the port once it listens.
    """

    def __init__(
        self,
        option: str,
        description: str,
        factory: IProtocolFactory,
        clock: Any,
        serves: str,
        after: Deferred[Any] | None = None,
    ) -> None:
        super().__init__(endpoints.serverFromString(clock, description), factory)
        # Listen only once this fires (the saved rooms are back), if given.
        self._after = after
        self._after_fired = after is None
        if after is not None:
            after.addBoth(self._fired)
        self._raiseSynchronously = True
        self.option = option
        self.description = description
        self.serves = serves
        self.secure = description.split(":", 1)[0].strip().lower() in TLS_ENDPOINT_TYPES
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def _failed(self, reason: BaseException) -> str:
        if isinstance(reason, CannotListenError) and reason.socketError is not None:
            error = reason.socketError
            why = getattr(error, "strerror", None) or str(error)
        else:
            why = str(reason) or type(reason).__name__
        return f"gameframe cannot listen on --{self.option} {self.description}: {why}"

    def _fired(self, result: Any) -> Any:
        self._after_fired = True
        return result

    def privilegedStartService(self) -> None:
        if not self._after_fired:
            return  # startService listens once `after` fires
        try:
            super().privilegedStartService()
        except Exception as e:
            raise StartupFailed(self._failed(e)) from None
        waiting = self._waitingForPort
        assert waiting is not None
        waiting.addCallback(self._listened)

    def startService(self) -> None:
        Service.startService(self)
        if self._waitingForPort is not None:
            return  # listening since privilegedStartService
        if self._after_fired:
            self.privilegedStartService()
            return
        assert self._after is not None
        self._after.addCallback(self._listen_late)

    def _listen_late(self, result: Any) -> Any:
        if self.running and self._waitingForPort is None:
            try:
                self.privilegedStartService()
            except StartupFailed as e:
                self.listening.errback(Failure(e))
        return result

    def _listened(self, port: IListeningPort | None) -> IListeningPort | None:
        # None: the listen failed later (an endpoint that listens
        # asynchronously); StreamServerEndpointService has logged it.
        if port is not None:
            accept_fairly(port)
            self.port = port
            self.listening.callback(port)
        elif not self.listening.called:
            self.listening.errback(
                Failure(StartupFailed(f"gameframe cannot listen on --{self.option} {self.description}"))
            )
        return port

    def address(self) -> str:
        assert self.port is not None
        return _describe(self.port.getHost())


class GameframeService(MultiService):
    """
    The whole server. Starts: every port listens (or the start fails in
    one line), then the log names each endpoint and the room types.

    Stops one child at a time, last added first, each after the one before
    has finished: the ports stop listening, then the rooms shut down
    (C{on_shutdown}, players told C{server_shutdown}). The whole stop is
    bounded: C{shutdown_timeout} plus a short grace, then the process goes on
    exiting whatever is still pending.
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        shutdown_timeout: float | None = None,
        rooms: Sequence[str] = (),
        gate: ConnectionGate | None = None,
    ) -> None:
        super().__init__()
        self.listening = False
        self._clock = clock
        self._shutdown_timeout = shutdown_timeout
        self._room_types = list(rooms)
        self._gate = gate

    def listeners(self) -> list[Listener]:
        return [child for child in self if isinstance(child, Listener)]

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except StartupFailed as e:
            log.critical("{message}", message=e.message)
            raise

    def startService(self) -> None:
        try:
            super().startService()
        except StartupFailed as e:
            log.critical("{message}", message=e.message)
            raise
        listeners = self.listeners()
        DeferredList(
            [listener.listening for listener in listeners],
            fireOnOneErrback=True,
            consumeErrors=True,
        ).addCallbacks(lambda _: self._announce(listeners), self._failed_later)

    def _failed_later(self, failure: Failure) -> None:
        """An endpoint that listens asynchronously failed: stop the server."""
        error = failure.value
        if isinstance(error, FirstError):
            error = error.subFailure.value
        log.critical("{message}", message=str(error))
        from twisted.internet import reactor

        reactor.stop()

    def readiness(self, rooms: RoomService) -> list[str]:
        """What keeps the server from taking new players (C{GET /readyz}); empty: ready."""
        problems = [] if self.listening else ["the ports are not all listening yet"]
        return problems + rooms.readiness()

    def _announce(self, listeners: list[Listener]) -> None:
        self.listening = True
        for listener in listeners:
            address = listener.address()
            if listener.option == "web":
                scheme = "https" if listener.secure else "http"
                host, _, port = address.rpartition(":")
                if host in ("0.0.0.0", "[::]"):
                    host = "127.0.0.1"
                url = f"{scheme}://{host}:{port}/" if port.isdigit() else scheme + ":"
                log.info(
                    "gameframe web on {address}{tls}: {url} (browser demo, "
                    "{ws}://…/ws for WebSocket players, /rooms, /metrics)",
                    address=address,
                    tls=" (TLS)" if listener.secure else "",
                    url=url,
                    ws="wss" if listener.secure else "ws",
                )
            else:
                log.info(
                    "gameframe players on {address}{tls} ({serves})",
                    address=address,
                    tls=" (TLS)" if listener.secure else "",
                    serves=listener.serves,
                )
        log.info("gameframe rooms: {rooms}", rooms=", ".join(self._room_types))

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)

        async def stop_all() -> None:
            for child in reversed(list(self)):
                await maybeDeferred(child.stopService)
            await self._connections_closed()

        stopping = Deferred.fromCoroutine(stop_all())
        if self._shutdown_timeout is None or self._clock is None:
            return stopping
        bound = self._shutdown_timeout + SHUTDOWN_GRACE

        def timed_out(failure: Failure) -> None:
            failure.trap(Exception)
            log.warn(
                "gameframe did not finish shutting down within {bound} s "
                "(--shutdown-timeout plus {grace} s); exiting anyway",
                bound=bound,
                grace=SHUTDOWN_GRACE,
            )

        return stopping.addTimeout(bound, self._clock).addErrback(timed_out)


    async def _connections_closed(self) -> None:
        """
        Wait until every connection has closed (the clients have read their
        C{disconnect} and hung up), so the reactor does not cut off the last
        bytes as it stops; the stop's bound caps the wait.
        """
        gate, clock = self._gate, self._clock
        if gate is None or clock is None:
            return
        while gate.open > 0:
            await deferLater(clock, CLOSE_POLL, lambda: None)


class StoresService(Service):
    """Closes the room store and player storage (their thread or connection) when the server stops."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.stores.close()


# The old name: a MultiService that stops its children in order, last first.
InOrderMultiService = GameframeService


def makeService(options: Any) -> IService:
    """
    Wire the RoomService and its listening ports into one GameframeService;
    with C{--redis}, a cluster node joins them to the others first. With
    C{--workers N} (N > 1), the service of a parent that only supervises
    N such servers (L{gameframe.workers}).
    """
    server = _make_server(options)
    if options["log-format"] == "json":
        return LoggedAs(server, json_observer())
    return server


def _make_server(options: Any) -> IService:
    from twisted.internet import reactor

    if options["workers"] > 1:
        from gameframe.workers import supervise

        return supervise(reactor, options)

    rooms_types: dict[str, type[Room]] = options["rooms"]
    limits = options.limits()
    # One gate for both endpoints: the connection counts add up across them.
    gate = ConnectionGate(limits)
    top = GameframeService(reactor, options["shutdown-timeout"], list(rooms_types), gate)
    node = options["node"]
    # Seconds between flushes (None: adaptive, the default).
    flush_interval = (
        None if options["flush-interval"] is None else options["flush-interval"] / 1000.0
    )
    cluster = None
    store = None
    if options["redis"] is not None:
        from gameframe.cluster.node import ClusterNode
        from gameframe.cluster.redis import RedisCluster

        store = RedisCluster.from_url(options["redis"])
        cluster = ClusterNode(
            reactor,
            store,
            node,
            placement=options["placement-policy"],
            flush_interval=flush_interval or 0.0,
        )
        # First: the children stop in reverse order, so the node leaves
        # the cluster after its rooms have shut down.
        cluster.setServiceParent(top)
    stores = open_stores(options["store-spec"], reactor, store)
    if stores.rooms is not None:
        # Before the rooms: closed after they are saved (and before the cluster's Redis).
        StoresService(stores).setServiceParent(top)
    rooms = RoomService(
        reactor,
        rooms_types,
        authenticate=options["authenticate"],
        require_auth=bool(options["require-auth"]),
        shutdown_timeout=options["shutdown-timeout"],
        node=node,
        cluster=cluster,
        store=stores.rooms,
        storage=stores.storage,
        restore_grace=options["restore-grace"],
    )
    # The RoomService before the ports: the children stop in reverse order,
    # so the ports stop listening before the rooms shut down.
    rooms.setServiceParent(top)
    inherited: dict[str, int] = options["inherited"]
    if inherited:
        from gameframe.workers import SupervisorWatch

        # A worker of --workers: it stops when its parent is gone.
        SupervisorWatch(reactor).setServiceParent(top)

    def listen_on(option: str) -> Any:
        """The reactor for C{option}'s endpoint; in a worker, one adopting its inherited socket."""
        if option not in inherited:
            return reactor
        from gameframe.workers import Adopter

        return Adopter(reactor, inherited[option])

    shared: dict[str, Any] = {
        "limits": limits,
        "gate": gate,
        "max_pending": options["max-pending"],
    }
    factory = GameFactory(
        rooms,
        reactor,
        max_frame=options["max-frame"],
        flush_interval=flush_interval,
        **shared,
    )
    # The ports listen once the saved rooms are back, so no player finds them missing.
    Listener(
        "port", options["port"], factory, listen_on("port"), "JSON Lines", rooms.restored
    ).setServiceParent(top)
    if options["web"] is not None:
        websocket = WebSocketGameFactory(
            rooms,
            reactor,
            max_frame=options["max-frame"],
            allowed_origins=options["allowed-origins"],
            ping_interval=options["ws-ping"],
            flush_interval=flush_interval,
            **shared,
        )
        PingService(websocket).setServiceParent(top)
        Listener(
            "web",
            options["web"],
            make_site(
                rooms, websocket, lambda: top.readiness(rooms), options["admin-token"]
            ),
            listen_on("web"),
            "HTTP, WebSocket",
            rooms.restored,
        ).setServiceParent(top)
    return top
