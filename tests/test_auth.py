"""Authentication: the server-wide authenticate action, --require-auth, Room.on_auth, identity on reconnect; ping."""

from __future__ import annotations

import time
from typing import Any

import jwt
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from gameframe import GameError, Player, Room, action
from gameframe.testing import Harness

SECRET = "test-signing-key-of-a-decent-length"


def verify_jwt(token: str) -> str:
    """What an --auth callable does with PyJWT: the subject of a valid HS256 token."""
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    return str(claims["sub"])


def signed(sub: str, key: str = SECRET, expires_in: float = 3600) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + expires_in)}, key, algorithm="HS256")


class Guarded(Room):
    """Lets in only authenticated users, and only with the right password for VIP rooms."""

    reconnect_timeout = 30
    calls: list[tuple[str, Any]] = []

    def on_auth(self, player: Player, options: dict[str, Any]) -> Any:
        self.calls.append(("auth", player.user))
        if options.get("password") == "bad":
            raise GameError("wrong_password", "that is not the password")
        if options.get("deny"):
            raise PermissionError(f"not you, {options.get('deny')}")
        role = "vip" if player.user == "ann" else "guest"
        if options.get("slow"):
            self.door: Deferred[str] = Deferred()
            return self.door
        return role

    def on_join(self, player: Player, options: dict[str, Any]) -> None:
        self.calls.append(("join", player.auth))

    @action
    def whoami(self, player: Player) -> list[Any]:
        return [player.user, player.auth]


class PingTests(SynchronousTestCase):
    def test_ping_is_answered_with_pong_echoing_t_and_id(self) -> None:
        kit = Harness({"g": Guarded})
        alice = kit.connect()
        self.assertEqual(alice.request("ping", t=12.5), {"action": "pong", "t": 12.5, "id": "t1"})
        alice.send("ping")
        self.assertEqual(alice.last(), {"action": "pong"})

    def test_ping_needs_no_authentication(self) -> None:
        kit = Harness({"g": Guarded}, authenticate=verify_jwt, require_auth=True)
        alice = kit.connect()
        self.assertEqual(alice.request("ping", t="x")["action"], "pong")


class AuthenticateTests(SynchronousTestCase):
    def setUp(self) -> None:
        Guarded.calls = []
        self.kit = Harness({"g": Guarded}, authenticate=verify_jwt, require_auth=True)

    def test_a_real_signed_token_authenticates(self) -> None:
        alice = self.kit.connect()
        reply = alice.request("authenticate", token=signed("ann"))
        self.assertEqual(reply, {"action": "authenticated", "id": "t1"})
        self.assertEqual(alice.player.user, "ann")
        self.assertEqual(alice.join_or_create("g")["action"], "joined")
        self.assertEqual(alice.request("whoami")["result"], ["ann", "vip"])

    def test_bad_tokens_are_unauthorized(self) -> None:
        alice = self.kit.connect()
        for token in (signed("ann", key="another-key-entirely-long-enough"), signed("ann", expires_in=-10), "garbage"):
            self.assertEqual(alice.request("authenticate", token=token)["code"], "unauthorized")
        self.assertIsNone(alice.player.user)
        self.assertEqual(alice.request("authenticate", token=7)["code"], "bad_arguments")

    def test_require_auth_refuses_everything_else_until_authenticated(self) -> None:
        alice = self.kit.connect()
        for action_name, fields in [
            ("join_or_create", {"room": "g"}),
            ("list", {}),
            ("reconnect", {"token": "x.y"}),
            ("whoami", {}),
        ]:
            reply = alice.request(action_name, **fields)
            self.assertEqual(reply["code"], "unauthorized", action_name)
        self.assertEqual(Guarded.calls, [])
        alice.request("authenticate", token=signed("bob"))
        self.assertEqual(alice.request("list")["action"], "rooms")

    def test_a_deferred_identity_is_fine(self) -> None:
        pending: Deferred[str] = Deferred()
        kit = Harness({"g": Guarded}, authenticate=lambda token: pending)
        alice = kit.connect()
        alice.send("authenticate", token="anything", id=1)
        alice.send("ping", id=2)  # waits its turn behind the authenticate
        self.assertEqual(alice.received(), [alice.messages[0]])
        pending.callback("carol")
        self.assertEqual([m["action"] for m in alice.messages[1:]], ["authenticated", "pong"])
        self.assertEqual(alice.player.user, "carol")

    def test_a_none_identity_is_a_refusal(self) -> None:
        kit = Harness({"g": Guarded}, authenticate=lambda token: succeed(None))
        alice = kit.connect()
        self.assertEqual(alice.request("authenticate", token="t")["code"], "unauthorized")

    def test_without_an_authenticator_authenticate_is_unauthorized(self) -> None:
        kit = Harness({"g": Guarded})
        alice = kit.connect()
        self.assertEqual(alice.request("authenticate", token="t")["code"], "unauthorized")
        self.assertEqual(alice.join_or_create("g")["action"], "joined")  # not required

    def test_secrets_never_reach_the_log(self) -> None:
        token = signed("ann", key="a-key-the-server-does-not-know-at-all")

        def leaky(given: str) -> str:
            raise ValueError(f"cannot use {given}")  # an exception quoting the secret

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        kit = Harness({"g": Guarded}, authenticate=leaky)
        alice = kit.connect()
        self.assertEqual(alice.request("authenticate", token=token)["code"], "unauthorized")
        joined = kit.connect().join_or_create("g")
        secret = joined["token"].rpartition(".")[2]
        text = "\n".join(formatEvent(e) + repr(e) for e in logged)
        self.assertNotIn(token, text)
        self.assertNotIn(secret, text)
        self.assertIn("failed to authenticate", text)


class OnAuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        Guarded.calls = []
        self.kit = Harness({"g": Guarded}, authenticate=verify_jwt)

    def test_on_auth_runs_before_on_join_on_every_join_path(self) -> None:
        ann, bob, cat = self.kit.connect(), self.kit.connect(), self.kit.connect()
        ann.request("authenticate", token=signed("ann"))
        room_id = ann.create("g")["room_id"]
        bob.join(room_id)
        cat.join_or_create("g")
        self.assertEqual(
            Guarded.calls,
            [("auth", "ann"), ("join", "vip")] + [("auth", None), ("join", "guest")] * 2,
        )
        self.assertEqual(cat.request("whoami")["result"], [None, "guest"])

    def test_a_refusal_is_unauthorized_or_the_game_errors_code(self) -> None:
        ann = self.kit.connect()
        room_id = self.kit.connect().create("g")["room_id"]
        self.assertEqual(ann.join(room_id, deny="ann")["code"], "unauthorized")
        self.assertEqual(ann.join(room_id, password="bad")["code"], "wrong_password")
        self.assertIsNone(ann.player.room)
        self.assertEqual(len(self.kit.room(room_id).players), 1)
        self.assertEqual([c for c in Guarded.calls if c[0] == "join"], [("join", "guest")])
        self.assertEqual(ann.join(room_id)["action"], "joined")

    def test_an_async_on_auth_holds_the_join(self) -> None:
        ann = self.kit.connect()
        room = self.kit.room(self.kit.connect().create("g")["room_id"])
        ann.send("join", room_id=room.room_id, options={"slow": True}, id="j")
        self.assertEqual(ann.received("joined"), [])
        room.door.callback("late")  # type: ignore[attr-defined]
        self.assertEqual(ann.last("joined")["id"], "j")
        self.assertEqual(ann.request("whoami")["result"], [None, "late"])

    def test_the_identity_survives_a_reconnect(self) -> None:
        ann = self.kit.connect()
        ann.request("authenticate", token=signed("ann"))
        ann.create("g")
        ann.drop()
        back = ann.reconnect()
        self.assertEqual(back.last("joined")["player_id"], ann.player_id)
        self.assertEqual(back.request("whoami")["result"], ["ann", "vip"])

    def test_another_user_cannot_take_the_seat(self) -> None:
        ann = self.kit.connect()
        ann.request("authenticate", token=signed("ann"))
        token = ann.create("g")["token"]
        ann.drop()
        eve = self.kit.connect()
        eve.request("authenticate", token=signed("eve"))
        self.assertEqual(eve.request("reconnect", token=token)["code"], "unauthorized")
        again = self.kit.connect()
        again.request("authenticate", token=signed("ann"))
        self.assertEqual(again.request("reconnect", token=token)["action"], "joined")
