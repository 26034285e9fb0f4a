"""
--workers N: a parent holds the listening sockets and supervises N worker processes serving them.

The parent listens on C{--port} and C{--web} itself (so a port in use fails
the start in one line) but never accepts. It runs each worker, C{twistd -n
gameframe} with the same options minus C{--workers}, under Twisted's
process monitor, which restarts a worker that dies. The sockets reach the
workers by inheritance: the parent spawns each worker with the listening
sockets as its file descriptors 3 (and 4), named by the hidden option
C{--inherited-fds port=3,web=4}; the worker adopts each with
C{reactor.adoptStreamPort} where a single server would listen (L{Adopter};
an C{ssl:} endpoint's port is wrapped in TLS as C{listenSSL} wraps one).
The kernel hands each new connection to one of the workers accepting on
the shared socket. Only C{tcp:}, C{tcp6:} and C{ssl:} endpoints are shared.

Every worker's output is a line of the parent's log, after C{[worker-N]}.
SIGTERM on the parent: each worker gets SIGTERM and shuts down as a single
server does (SIGKILL if it overruns its own bound); the parent exits after
the last one. A worker whose parent is gone (SIGKILL) stops by itself.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import IO, Any, AnyStr, Callable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet import abstract, fdesc
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessProtocol,
    IProcessTransport,
    IProtocolFactory,
    IReactorProcess,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    Logger,
    formatEventAsClassicLogText,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.runner.procmon import ProcessMonitor
from zope.interface import implementer

from gameframe.tap import (
    CLOSE_POLL,
    SHUTDOWN_GRACE,
    WORKER_FDS,
    GameframeService,
    Listener,
)

log = Logger()

# A worker that has not exited this long after its own bounded shutdown
# (--shutdown-timeout plus SHUTDOWN_GRACE) is killed (SIGKILL).
KILL_MARGIN = 2.0
# The file descriptor a worker finds the first inherited listening socket at
# (the next ones follow): after stdin, stdout and stderr, as systemd does.
FIRST_INHERITED_FD = 3
# How a worker runs twistd: the parent's own interpreter (so the same
# installation and plugins), without the current directory put first on
# sys.path (-P: the server appends it, after the installed modules).
TWISTD = "from twisted.scripts.twistd import run; run()"
# The options the parent decides for each worker instead of passing them on.
NOT_PASSED_ON = frozenset({"--workers", "--node", f"--{WORKER_FDS}"})


# -- in each worker ------------------------------------------------------------------


class Adopter:
    """
    Stands in for the reactor while one endpoint listens in a worker: the
    endpoint (parsed from the same C{--port}/C{--web} string as a single
    server's) calls C{listenTCP} or C{listenSSL}, and this adopts the
    listening socket inherited from the parent instead
    (C{reactor.adoptStreamPort}). For C{ssl:} the adopted port is wrapped
    with TLS exactly as C{reactor.listenSSL} wraps a port it opens
    (L{TLSMemoryBIOFactory}, server side), with the context factory the
    endpoint string built: each worker loads the key and certificate itself.
    """

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        family = listening_family(self._fd)
        fdesc.setNonBlocking(self._fd)
        adopted: IListeningPort = self._reactor.adoptStreamPort(self._fd, family, factory)
        # adoptStreamPort listens on a duplicate of the descriptor.
        os.close(self._fd)
        return adopted

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        return self.listenTCP(port, TLSMemoryBIOFactory(contextFactory, False, factory))


def listening_family(fd: int) -> socket.AddressFamily:
    """The address family of the inherited listening TCP socket C{fd}; else an OSError saying so."""
    try:
        probe = socket.socket(fileno=fd)
    except OSError as e:
        raise OSError(f"inherited file descriptor {fd} is not a socket ({e.strerror})") from None
    try:
        listening = probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        family, kind = probe.family, probe.type
    finally:
        probe.detach()  # the descriptor stays open, for adoptStreamPort
    inet = family in (socket.AF_INET, socket.AF_INET6)
    if not (inet and kind == socket.SOCK_STREAM and listening):
        raise OSError(f"inherited file descriptor {fd} is not a listening TCP socket")
    return family


class _StandardInput(abstract.FileDescriptor):
    """A worker's standard input, a pipe from its parent: its end means the parent is gone."""

    def __init__(self, reactor: Any, gone: Callable[[], None]) -> None:
        super().__init__(reactor)
        self._gone = gone
        fdesc.setNonBlocking(0)

    def fileno(self) -> int:
        return 0

    def doRead(self) -> Any:
        return fdesc.readFromFD(0, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self._gone()


class SupervisorWatch(Service):
    """
    Stops a worker whose parent is gone (killed with SIGKILL, say), so no
    unsupervised worker keeps the ports: the parent holds the other end of
    the worker's standard input, which ends when the parent does.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._input: _StandardInput | None = None

    def startService(self) -> None:
        super().startService()
        self._input = _StandardInput(self._reactor, self._gone)
        self._input.startReading()

    def _gone(self) -> None:
        if not self.running:
            return
        log.warn("gameframe worker: the supervising process is gone; stopping")
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass

    def stopService(self) -> None:
        super().stopService()
        if self._input is not None:
            self._input.stopReading()


def worker_log() -> ILogObserver:
    """
    The log observer of a worker's twistd (C{--logger}): the classic line
    without its time stamp, on standard output; the parent logs each line
    with its own time and the worker's name.
    """

    def line(event: LogEvent) -> str | None:
        text = formatEventAsClassicLogText(event, formatTime=lambda when: "")
        return text.lstrip(" ") if text else None

    output: IO[str] = sys.stdout
    return FileLogObserver(output, line)


# -- in the parent -------------------------------------------------------------------


@implementer(IReactorProcess, IReactorTime)
class _Spawner:
    """
    The reactor as the process monitor sees it: each process it spawns
    also inherits the listening sockets, at the descriptors C{inherit()}
    maps them to (child descriptor → parent descriptor).

    Why this way: a child gets only the descriptors C{spawnProcess}'s
    C{childFDs} names (Twisted closes every other one in the child), and
    L{ProcessMonitor} spawns with the default C{childFDs}; giving the monitor
    this reactor adds the sockets without copying any of the monitor's code
    (its restart, back-off and kill logic stay Twisted's). Inheriting at
    fork is simpler than passing each socket over a UNIX socket
    (C{sendFileDescriptor}): nothing to connect or to order, and a restarted
    worker gets the very same sockets.
    """

    def __init__(self, reactor: Any, inherit: Callable[[], Mapping[int, int]]) -> None:
        self._reactor = reactor
        self._inherit = inherit

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[AnyStr, AnyStr] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport:
        fds: dict[int, int | str] = dict(childFDs or {0: "w", 1: "r", 2: "r"})
        fds.update(self._inherit())
        transport: IProcessTransport = self._reactor.spawnProcess(
            processProtocol, executable, args, env, path, uid, gid, usePTY, fds
        )
        return transport

    def seconds(self) -> float:
        now: float = self._reactor.seconds()
        return now

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> IDelayedCall:
        call: IDelayedCall = self._reactor.callLater(delay, callable, *args, **kw)
        return call

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        calls: Sequence[IDelayedCall] = self._reactor.getDelayedCalls()
        return calls


class WorkerMonitor(ProcessMonitor):
    """
    Twisted's process monitor (a worker that dies is started again), whose
    workers inherit the listening sockets, and whose stop waits until every
    worker has exited: SIGTERM, then SIGKILL after C{kill_time} seconds.
    """

    def __init__(
        self, reactor: Any, inherit: Callable[[], Mapping[int, int]], kill_time: float
    ) -> None:
        super().__init__(_Spawner(reactor, inherit))
        self._clock = reactor
        self.killTime = kill_time  # type: ignore[assignment]

    def pids(self) -> dict[str, int]:
        """Each running worker's process ID, by name."""
        found = {}
        for name, protocol in self.protocols.items():
            pid = getattr(protocol.transport, "pid", None)
            if pid is not None:
                found[name] = pid
        return found

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()

        async def exited() -> None:
            while self.protocols:
                await deferLater(self._clock, CLOSE_POLL, lambda: None)

        return Deferred.fromCoroutine(exited())


class ForWorkers(Factory):
    """The factory of the parent's ports, which never accept: it holds them for the workers."""

    noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None


class Supervisor(GameframeService):
    """
    The parent of C{--workers N}: listens on C{--port} and C{--web} (so a
    port in use fails the start in one line, as a single server's does),
    never accepts there, and runs the workers that do, restarting any that
    dies. Stopping: the workers are told to stop (SIGTERM: each shuts down
    as a single server does) and the parent closes its copies of the
    sockets at once, so the ports close as soon as the workers stop
    listening; it exits once every worker has.
    """

    def __init__(
        self,
        clock: IReactorTime,
        listeners: Sequence[Listener],
        monitor: WorkerMonitor,
        workers: Sequence[str],
        rooms: Sequence[str] = (),
    ) -> None:
        super().__init__(clock, None, rooms)
        self._reactor = clock
        self._listeners = list(listeners)
        self._monitor = monitor
        self._workers = list(workers)
        for listener in self._listeners:
            listener.listening.addCallback(self._hold)
            listener.setServiceParent(self)
        monitor.setServiceParent(self)

    @staticmethod
    def _hold(port: IListeningPort) -> IListeningPort:
        # The port listens (the kernel queues connections) but this process
        # never reads it: the workers accept.
        port.stopReading()  # type: ignore[attr-defined]
        # Closing this copy must not shut the socket down (shutdown() acts
        # on the socket the workers share, not on one descriptor): the
        # workers stop listening on theirs as they stop.
        port._shouldShutdown = False  # type: ignore[attr-defined]
        return port

    def inherited(self) -> dict[int, int]:
        """Worker descriptor → this process's listening socket, in the order of the listeners."""
        fds = {}
        for index, listener in enumerate(self._listeners):
            if listener.port is None or listener.port.fileno() < 0:  # type: ignore[attr-defined]
                raise OSError(f"--{listener.option} is not listening")
            fds[FIRST_INHERITED_FD + index] = listener.port.fileno()  # type: ignore[attr-defined]
        return fds

    def _announce(self, listeners: list[Listener]) -> None:
        super()._announce(listeners)
        log.info(
            "gameframe workers: {count} processes serve these ports ({names})",
            count=len(self._workers),
            names=", ".join(self._workers),
        )

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        stopping = [self._monitor.stopService()]
        stopping += [maybeDeferred(listener.stopService) for listener in self._listeners]
        done: Deferred[None] = DeferredList(stopping, consumeErrors=True).addCallback(
            lambda _: None
        )
        bound = self._monitor.killTime + SHUTDOWN_GRACE

        def timed_out(failure: Failure) -> None:
            failure.trap(Exception)
            log.warn(
                "gameframe workers did not all exit within {bound} s; exiting anyway", bound=bound
            )

        return done.addTimeout(bound, self._reactor).addErrback(timed_out)


def worker_arguments(options: Any, number: int, inherited: Sequence[str]) -> list[str]:
    """
    The command line of worker C{number} (from 1): C{twistd -n gameframe}
    with the parent's gameframe options minus C{--workers}, its node name
    (C{--node} plus C{-wN}, or, without C{--node}, the default: unique per
    process), and which inherited descriptors are C{--port}'s and C{--web}'s.
    """
    passed: list[str] = []
    for option, value in options.given():
        if option in NOT_PASSED_ON:
            continue
        if option.startswith("--"):
            takes_value = option[2:] + "=" in options.longOpt
            passed.append(f"{option}={value}" if takes_value else option)
        else:
            takes_value = option[1:] + ":" in options.shortOpt
            passed += [option, value] if takes_value else [option]
    if any(option == "--node" for option, _ in options.given()):
        passed.append(f"--node={options['node']}-w{number}")
    fds = ",".join(
        f"{name}={FIRST_INHERITED_FD + index}" for index, name in enumerate(inherited)
    )
    passed.append(f"--{WORKER_FDS}={fds}")
    return [
        sys.executable, "-P", "-c", TWISTD,
        "--nodaemon", "--pidfile=", f"--logger={__name__}.worker_log",
        "gameframe", *passed,
    ]  # fmt: skip


def supervise(reactor: Any, options: Any) -> Supervisor:
    """The service of C{--workers N}'s parent process."""
    count: int = options["workers"]
    listeners = [Listener("port", options["port"], ForWorkers(), reactor, "JSON Lines")]
    if options["web"] is not None:
        listeners.append(Listener("web", options["web"], ForWorkers(), reactor, "HTTP, WebSocket"))
    names = [f"worker-{number}" for number in range(1, count + 1)]
    kill_time = options["shutdown-timeout"] + SHUTDOWN_GRACE + KILL_MARGIN
    supervisor: Supervisor

    def inherit() -> Mapping[int, int]:
        return supervisor.inherited()

    monitor = WorkerMonitor(reactor, inherit, kill_time)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for number, name in enumerate(names, start=1):
        arguments = worker_arguments(options, number, [listener.option for listener in listeners])
        monitor.addProcess(name, arguments, env=environment)
    supervisor = Supervisor(reactor, listeners, monitor, names, list(options["rooms"]))
    return supervisor
