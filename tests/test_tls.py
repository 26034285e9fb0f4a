"""TLS: players over ssl: endpoints (JSON Lines over TLS, wss://, https:// with the browser demo)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl as twisted_ssl
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from gameframe import GameFactory, RoomService
from gameframe._sendpath import SocketWriter, TransportWriter
from gameframe.demo.chat import ChatRoom
from tests._server import (
    HOST,
    RunningServer,
    TlsLineClient,
    free_port,
    start_server_at,
    stop_process,
    wait_for_log,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

WAIT_MS = 10_000
WS_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (key.pem, cert.pem)."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gameframe test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture(scope="module")
def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the test certificate (and verifies it)."""
    return ssl.create_default_context(cafile=str(certificate[1]))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[RunningServer]:
    """The real server with both endpoints on TLS: ssl: for TCP, ssl: for the web."""
    key, cert = certificate
    port, web_port = free_port(), free_port()
    tls = f"interface={HOST}:privateKey={key}:certKey={cert}"
    server = start_server_at(
        tmp_path_factory.mktemp("tls-server"),
        f"ssl:{port}:{tls}", port, f"ssl:{web_port}:{tls}", web_port,
    )  # fmt: skip
    try:
        yield server
    finally:
        stop_process(server.process)


def test_the_log_says_tls(tls_server: RunningServer) -> None:
    log = wait_for_log(tls_server, "gameframe rooms:")
    assert f"gameframe players on {HOST}:{tls_server.port} (TLS)" in log
    assert f"https://{HOST}:{tls_server.web_port}/" in log
    assert "wss://" in log


def test_json_lines_over_tls(tls_server: RunningServer, client_context: ssl.SSLContext) -> None:
    player = TlsLineClient(tls_server.port, client_context)
    try:
        assert isinstance(player.sock, ssl.SSLSocket)
        assert player.sock.version() is not None
        joined = player.request("join_or_create", room="chat")
        assert joined["action"] == "joined"
        player.send(action="say", text="over TLS")
        said = player.expect("said", player_id=player.player_id)
        assert said["text"] == "over TLS"
    finally:
        player.close()


def test_plain_tcp_is_refused_by_a_tls_port(tls_server: RunningServer) -> None:
    import socket

    with socket.create_connection((HOST, tls_server.port), timeout=WS_TIMEOUT) as sock:
        sock.sendall(b'{"action": "ping"}\n')
        # Not a TLS handshake: the server closes without a word of JSON.
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        assert b"welcome" not in received


def test_wss_and_tls_players_chat(
    tls_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    from websockets.sync.client import connect

    url = f"wss://{HOST}:{tls_server.web_port}/ws"
    with connect(url, ssl=client_context, open_timeout=WS_TIMEOUT) as ws:

        def receive(action: str, **fields: Any) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(ws.recv(timeout=WS_TIMEOUT))
                if message["action"] == action and all(
                    message.get(k) == v for k, v in fields.items()
                ):
                    return message

        ws_id = receive("welcome")["player_id"]
        ws.send(json.dumps({"action": "create", "room": "chat", "id": "c"}))
        room_id = receive("joined", id="c")["room_id"]

        player = TlsLineClient(tls_server.port, client_context)
        try:
            assert player.request("join", room_id=room_id)["action"] == "joined"
            receive("player_joined", player_id=player.player_id)
            ws.send(json.dumps({"action": "say", "text": "from wss"}))
            assert player.expect("said", player_id=ws_id)["text"] == "from wss"
            player.send(action="say", text="from TLS")
            assert receive("said", player_id=player.player_id)["text"] == "from TLS"
        finally:
            player.close()


def test_https_serves_the_demo_and_rooms(
    tls_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    from urllib.request import urlopen

    base = f"https://{HOST}:{tls_server.web_port}"
    with urlopen(base + "/rooms", context=client_context, timeout=WS_TIMEOUT) as response:
        assert "chat" in json.load(response)["types"]
    with urlopen(base + "/gameframe.js", context=client_context, timeout=WS_TIMEOUT) as response:
        assert b"wss:" in response.read()


def test_no_direct_sends_under_tls(certificate: tuple[Path, Path]) -> None:
    """
    A connection on a TLS endpoint has a TLS transport, not the plain TCP
    connection the direct send path writes to: it gets the transport's writer.
    """
    key, cert = certificate
    server_cert = twisted_ssl.PrivateCertificate.loadPEM(key.read_bytes() + cert.read_bytes())
    clock = Clock()
    factory = GameFactory(RoomService(clock, {"chat": ChatRoom}), clock)
    tls_factory = TLSMemoryBIOFactory(server_cert.options(), False, factory)
    tls_protocol = tls_factory.buildProtocol(None)
    tls_protocol.makeConnection(StringTransport())
    try:
        game_protocol = tls_protocol.wrappedProtocol
        assert game_protocol.transport is tls_protocol
        assert not SocketWriter.usable(game_protocol.transport)
        # What writer_for gave the connection when it opened.
        assert isinstance(game_protocol._writer, TransportWriter)
    finally:
        tls_protocol.connectionLost(Failure(ConnectionDone()))


# -- the browser demo over https and wss -------------------------------------------




def test_browser_demo_over_https_chats_over_wss(
    browser: Browser, tls_server: RunningServer, client_context: ssl.SSLContext
) -> None:
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    player = TlsLineClient(tls_server.port, client_context)
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"https://{HOST}:{tls_server.web_port}/")
        page.wait_for_function("() => window.gameframeClient && window.gameframeClient.connected")
        assert page.evaluate("() => window.gameframeClient.socket.url").startswith("wss://")
        page.click("#play-chat")
        page.wait_for_function("() => window.gameframeClient.room === 'chat'")
        room_id = page.get_attribute("#room-id", "data-room-id")
        page_id = page.evaluate("() => window.gameframeClient.playerId")

        assert player.request("join", room_id=room_id)["action"] == "joined"
        player.send(action="say", text="hello over TLS")
        said = page.locator(f'#chat-log li.said[data-player-id="{player.player_id}"]')
        said.wait_for()
        assert said.inner_text().endswith("hello over TLS")

        page.fill("#chat-input", "hello over wss")
        page.press("#chat-input", "Enter")
        assert player.expect("said", player_id=page_id)["text"] == "hello over wss"
    finally:
        player.close()
        context.close()
    assert errors == []
