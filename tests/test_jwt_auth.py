"""The JWT recipe end to end: the real twistd with --auth examples.jwt_auth:verify --require-auth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import jwt
import pytest

from tests._server import LineClient, RunningServer, run_twistd, running_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SECRET = "a test secret of more than thirty-two characters"


def token(subject: str, secret: str = SECRET, lifetime: float = 300.0) -> str:
    claims = {"sub": subject, "exp": int(time.time() + lifetime)}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server, run from a directory where `examples` is the repository's."""
    directory = tmp_path_factory.mktemp("jwt-server")
    (directory / "examples").symlink_to(EXAMPLES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAMEFRAME_JWT_SECRET", SECRET)
        with running_server(
            directory, "--auth", "examples.jwt_auth:verify", "--require-auth"
        ) as server:
            yield server


@pytest.fixture
def player(jwt_server: RunningServer) -> Iterator[LineClient]:
    client = jwt_server.connect()
    try:
        yield client
    finally:
        client.close()


def test_a_signed_token_authenticates_then_the_player_joins(player: LineClient) -> None:
    refused = player.request("join_or_create", room="chat")
    assert refused["action"] == "error"
    assert refused["code"] == "unauthorized"

    assert player.request("authenticate", token=token("alice"))["action"] == "authenticated"
    joined = player.request("join_or_create", room="chat")
    assert joined["action"] == "joined"
    player.send(action="say", text="signed in")
    assert player.expect("said", player_id=player.player_id)["text"] == "signed in"


@pytest.mark.parametrize(
    "bad",
    [
        token("mallory", secret="another secret, also more than thirty-two characters"),
        token("alice", lifetime=-60),
        jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 300}, SECRET, algorithm="HS512"),
        "not a token",
    ],
    ids=["wrong-secret", "expired", "no-exp", "other-algorithm", "garbage"],
)
def test_a_bad_token_is_unauthorized(player: LineClient, bad: str) -> None:
    reply = player.request("authenticate", token=bad)
    assert reply["action"] == "error"
    assert reply["code"] == "unauthorized"
    still_refused = player.request("join_or_create", room="chat")
    assert still_refused["code"] == "unauthorized"


def test_without_the_secret_the_server_does_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").symlink_to(EXAMPLES)
    monkeypatch.delenv("GAMEFRAME_JWT_SECRET", raising=False)
    result = run_twistd(tmp_path, "--auth", "examples.jwt_auth:verify", "--require-auth")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "cannot import examples.jwt_auth" in result.stderr
    assert "set GAMEFRAME_JWT_SECRET" in result.stderr
