"""Room actions: the @action decorator and argument checking from handler signatures."""

# No `from __future__ import annotations` here on purpose: these rooms use
# evaluated annotations, the demo rooms (tests/test_demo_*.py) use strings.

import typing
from typing import Any, Literal, Optional

import pytest
from twisted.trial.unittest import SynchronousTestCase

from gameframe import Player, Room, action
from gameframe.testing import FakeClient, Harness


class Checked(Room):
    """One action per kind of annotation; each records its calls."""

    def on_create(self, options: dict) -> None:  # type: ignore[type-arg]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, name: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        return kwargs

    @action
    def an_int(self, player: Player, value: int) -> Any:
        return self._record("an_int", value=value)

    @action
    def a_bool(self, player: Player, value: bool) -> Any:
        return self._record("a_bool", value=value)

    @action
    def a_float(self, player: Player, value: float) -> Any:
        return self._record("a_float", value=value)

    @action
    def a_str(self, player: Player, value: str) -> Any:
        return self._record("a_str", value=value)

    @action
    def a_pipe_optional(self, player: Player, value: str | None) -> Any:
        return self._record("a_pipe_optional", value=value)

    @action
    def a_typing_optional(self, player: Player, value: Optional[int]) -> Any:
        return self._record("a_typing_optional", value=value)

    @action
    def with_default(self, player: Player, value: int, times: int = 1) -> Any:
        return self._record("with_default", value=value, times=times)

    @action
    def a_list(self, player: Player, value: list[int]) -> Any:
        return self._record("a_list", value=value)

    @action
    def a_dict(self, player: Player, value: dict[str, Any]) -> Any:
        return self._record("a_dict", value=value)

    @action
    def a_literal(self, player: Player, value: Literal["rock", "paper", 3]) -> Any:
        return self._record("a_literal", value=value)

    @action
    def anything(self, player: Player, value: Any, other=None) -> Any:  # type: ignore[no-untyped-def]
        return self._record("anything", value=value, other=other)

    @action
    def no_arguments(self, player: Player) -> Any:
        return self._record("no_arguments")

    @action
    def open_ended(self, player: Player, value: int, **rest: Any) -> Any:
        return self._record("open_ended", value=value, **rest)

    @action("chat")
    def say(self, player: Player, text: str) -> Any:
        return self._record("say", text=text)

    def not_an_action(self, player: Player) -> None:
        self._record("not_an_action")


class ArgumentCheckingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"checked": Checked})
        self.client: FakeClient = self.kit.connect()
        joined = self.client.join_or_create("checked")
        assert joined["action"] == "joined", joined
        self.room = typing.cast(Checked, self.kit.room_of(self.client))

    def accepted(self, action_name: str, **fields: Any) -> Any:
        """The handler ran with these fields and its result came back."""
        before = len(self.room.calls)
        reply = self.client.request(action_name, **fields)
        self.assertEqual(reply["action"], "result", reply)
        self.assertEqual(len(self.room.calls), before + 1)
        return reply["result"]

    def refused(self, action_name: str, **fields: Any) -> str:
        """The client got bad_arguments and the handler never ran."""
        before = list(self.room.calls)
        reply = self.client.request(action_name, **fields)
        self.assertEqual(reply["action"], "error", reply)
        self.assertEqual(reply["code"], "bad_arguments", reply)
        self.assertIn(action_name, reply["message"])
        self.assertEqual(self.room.calls, before, "the handler ran on bad arguments")
        return typing.cast(str, reply["message"])

    def test_int(self) -> None:
        self.assertEqual(self.accepted("an_int", value=3), {"value": 3})
        self.assertEqual(self.accepted("an_int", value=-40), {"value": -40})
        for bad in (True, False, 1.0, 1.5, "1", None, [1], {"v": 1}):
            message = self.refused("an_int", value=bad)
            self.assertIn("value", message)

    def test_bool(self) -> None:
        self.assertEqual(self.accepted("a_bool", value=True), {"value": True})
        self.assertEqual(self.accepted("a_bool", value=False), {"value": False})
        for bad in (0, 1, "true", None, 0.0):
            self.refused("a_bool", value=bad)

    def test_float_takes_any_number_but_not_a_bool(self) -> None:
        self.assertEqual(self.accepted("a_float", value=1.5), {"value": 1.5})
        self.assertEqual(self.accepted("a_float", value=2), {"value": 2})
        for bad in (True, "1.5", None, [1.5]):
            self.refused("a_float", value=bad)

    def test_str(self) -> None:
        self.assertEqual(self.accepted("a_str", value=""), {"value": ""})
        self.assertEqual(self.accepted("a_str", value="héllo"), {"value": "héllo"})
        for bad in (1, None, True, ["a"], {"a": 1}):
            self.refused("a_str", value=bad)

    def test_pipe_optional(self) -> None:
        self.assertEqual(self.accepted("a_pipe_optional", value=None), {"value": None})
        self.assertEqual(self.accepted("a_pipe_optional", value="x"), {"value": "x"})
        self.refused("a_pipe_optional", value=1)
        # Optional is about the value, not about leaving the field out.
        self.refused("a_pipe_optional")

    def test_typing_optional(self) -> None:
        self.assertEqual(self.accepted("a_typing_optional", value=None), {"value": None})
        self.assertEqual(self.accepted("a_typing_optional", value=5), {"value": 5})
        self.refused("a_typing_optional", value="5")
        self.refused("a_typing_optional", value=True)

    def test_defaults_make_a_field_optional(self) -> None:
        self.assertEqual(self.accepted("with_default", value=1), {"value": 1, "times": 1})
        self.assertEqual(
            self.accepted("with_default", value=1, times=4), {"value": 1, "times": 4}
        )
        # A default does not switch off the type check.
        self.refused("with_default", value=1, times="4")

    def test_missing_required_field(self) -> None:
        message = self.refused("with_default", times=2)
        self.assertIn("value", message)
        self.assertIn("required", message)
        self.refused("an_int")

    def test_extra_fields_are_rejected(self) -> None:
        message = self.refused("an_int", value=1, sneaky=2)
        self.assertIn("sneaky", message)
        self.refused("no_arguments", value=1)

    def test_extra_fields_go_to_kwargs(self) -> None:
        self.assertEqual(
            self.accepted("open_ended", value=1, colour="red", n=[1]),
            {"value": 1, "colour": "red", "n": [1]},
        )
        # Declared arguments are still checked.
        self.refused("open_ended", value="1", colour="red")

    def test_kwargs_never_take_the_handlers_own_parameter_names(self) -> None:
        # A client must not be able to crash a **kwargs handler into an
        # internal_error by sending a field named like `self` or `player`.
        for field in ("player", "self"):
            message = {"action": "open_ended", "id": field, "value": 1, field: "x"}
            self.kit.service.receive(self.client.player, message)
            reply = self.client.messages[-1]
            self.assertEqual((reply["id"], reply["code"]), (field, "bad_arguments"), reply)
            self.assertIn(field, reply["message"])
        self.assertEqual(self.room.calls, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_action_and_id_are_never_arguments(self) -> None:
        self.assertEqual(self.accepted("no_arguments"), {})
        self.assertEqual(self.accepted("open_ended", value=2), {"value": 2})

    def test_list_and_dict(self) -> None:
        self.assertEqual(self.accepted("a_list", value=[1, 2]), {"value": [1, 2]})
        self.assertEqual(self.accepted("a_list", value=[]), {"value": []})
        for bad in ({"a": 1}, "12", 1, None):
            self.refused("a_list", value=bad)
        self.assertEqual(self.accepted("a_dict", value={"a": 1}), {"value": {"a": 1}})
        for bad in ([1], "a", 1, None):
            self.refused("a_dict", value=bad)

    def test_literal(self) -> None:
        self.assertEqual(self.accepted("a_literal", value="rock"), {"value": "rock"})
        self.assertEqual(self.accepted("a_literal", value=3), {"value": 3})
        for bad in ("scissors", "Rock", 3.0, True, None, 4):
            self.refused("a_literal", value=bad)

    def test_unannotated_and_any_take_anything(self) -> None:
        for value in (None, 1, "x", [1], {"a": 1}, True):
            self.assertEqual(
                self.accepted("anything", value=value, other=value),
                {"value": value, "other": value},
            )
        self.refused("anything")

    def test_renamed_action(self) -> None:
        self.assertEqual(self.accepted("chat", text="hi"), {"text": "hi"})
        self.assertEqual(self.room.calls[-1], ("say", {"text": "hi"}))
        reply = self.client.request("say", text="hi")
        self.assertEqual(reply["code"], "unknown_action")
        self.refused("chat", text=1)

    def test_plain_methods_are_not_actions(self) -> None:
        for name in ("not_an_action", "_record", "on_create", "broadcast", "dispose"):
            reply = self.client.request(name)
            self.assertEqual(reply["action"], "error")
            self.assertEqual(reply["code"], "unknown_action", name)
        self.assertEqual(self.room.calls, [])
        self.assertIn(self.client.player_id, self.room.players)

    def test_bad_arguments_leave_the_player_seated_and_able_to_play(self) -> None:
        self.refused("an_int", value="x")
        self.assertIs(self.client.player.room, self.room)
        self.accepted("an_int", value=1)


class Base(Room):
    @action
    def poke(self, player: Player) -> str:
        return "base poke"

    @action
    def shout(self, player: Player, text: str) -> str:
        return "base " + text


class Derived(Base):
    @action
    def shout(self, player: Player, text: str, loud: bool = False) -> str:
        return "derived " + (text.upper() if loud else text)

    @action
    def extra(self, player: Player) -> str:
        return "derived extra"


class InheritanceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"base": Base, "derived": Derived})

    def test_subclass_inherits_overrides_and_adds_actions(self) -> None:
        client = self.kit.connect()
        client.join_or_create("derived")
        self.assertEqual(client.request("poke")["result"], "base poke")
        self.assertEqual(client.request("shout", text="hi", loud=True)["result"], "derived HI")
        self.assertEqual(client.request("extra")["result"], "derived extra")

    def test_base_class_does_not_get_the_subclass_actions(self) -> None:
        client = self.kit.connect()
        client.join_or_create("base")
        self.assertEqual(client.request("shout", text="hi")["result"], "base hi")
        self.assertEqual(client.request("shout", text="hi", loud=True)["code"], "bad_arguments")
        self.assertEqual(client.request("extra")["code"], "unknown_action")


def test_an_unknown_action_names_the_action() -> None:
    kit = Harness({"base": Base})
    client = kit.connect()
    client.join_or_create("base")
    reply = client.request("fly")
    assert reply["code"] == "unknown_action"
    assert "fly" in reply["message"]


def test_reserved_field_as_argument_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Bad(Room):
            @action
            def go(self, player: Player, id: int) -> None:
                pass


def test_uncheckable_annotation_fails_at_class_definition() -> None:
    with pytest.raises(TypeError):

        class Bad(Room):
            @action
            def go(self, player: Player, when: complex) -> None:
                pass


def test_positional_only_arguments_fail_at_class_definition() -> None:
    with pytest.raises(TypeError):

        class Bad(Room):
            @action
            def go(self, player: Player, *cells: int) -> None:
                pass


def test_a_handler_without_a_player_parameter_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="self, player"):

        class Bad(Room):
            @action
            def go(self) -> None:
                pass


def test_room_actions_cannot_take_lobby_names() -> None:
    import pytest

    from gameframe import Room
    from gameframe._actions import LOBBY_ACTIONS
    from gameframe.service import RoomService
    from twisted.internet.task import Clock

    assert LOBBY_ACTIONS == set(RoomService(Clock())._lobby)
    with pytest.raises(TypeError, match="lobby action"):

        class Sneaky(Room):
            @action("list")
            def listing(self, player: Any) -> None:
                pass


class Containers(Checked):
    """Parameterised container annotations: their items are checked too."""

    @action
    def ints(self, player: Player, cells: list[int]) -> Any:
        return self._record("ints", cells=cells)

    @action
    def scores(self, player: Player, value: dict[str, int]) -> Any:
        return self._record("scores", value=value)

    @action
    def point(self, player: Player, value: tuple[float, float]) -> Any:
        return self._record("point", value=value)

    @action
    def any_ints(self, player: Player, value: tuple[int, ...]) -> Any:
        return self._record("any_ints", value=value)

    @action
    def names(self, player: Player, value: typing.Sequence[str]) -> Any:
        return self._record("names", value=value)

    @action
    def counts(self, player: Player, value: typing.Mapping[str, int]) -> Any:
        return self._record("counts", value=value)

    @action
    def grid(self, player: Player, value: list[list[int]]) -> Any:
        return self._record("grid", value=value)

    @action
    def maybe_names(self, player: Player, value: Optional[list[str]]) -> Any:
        return self._record("maybe_names", value=value)

    @action
    def path(self, player: Player, value: list[tuple[int, int]]) -> Any:
        return self._record("path", value=value)

    @action
    def loose(self, player: Player, value: list[Any], extra: dict[str, Any]) -> Any:
        return self._record("loose", value=value, extra=extra)


class ContainerCheckingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kit = Harness({"containers": Containers})
        self.client: FakeClient = self.kit.connect()
        joined = self.client.join_or_create("containers")
        assert joined["action"] == "joined", joined
        self.room = typing.cast(Containers, self.kit.room_of(self.client))

    accepted = ArgumentCheckingTests.accepted
    refused = ArgumentCheckingTests.refused

    def tearDown(self) -> None:
        # A wrong item never reaches a handler (no internal_error logged).
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_list_items(self) -> None:
        self.assertEqual(self.accepted("ints", cells=[1, 2, 3]), {"cells": [1, 2, 3]})
        self.assertEqual(self.accepted("ints", cells=[]), {"cells": []})
        for bad in (["1"], [1, 2.5], [1, True], [None], [[1]], {"a": 1}, 1):
            message = self.refused("ints", cells=bad)
            self.assertIn("cells must be an array of integers", message)

    def test_dict_values(self) -> None:
        self.assertEqual(self.accepted("scores", value={"a": 1}), {"value": {"a": 1}})
        self.assertEqual(self.accepted("scores", value={}), {"value": {}})
        for bad in ({"a": "1"}, {"a": 1, "b": None}, {"a": 1.5}, [1], "a"):
            message = self.refused("scores", value=bad)
            self.assertIn("value must be an object whose values are integers", message)

    def test_fixed_tuple(self) -> None:
        self.assertEqual(self.accepted("point", value=[1.5, 2]), {"value": [1.5, 2]})
        for bad in ([1.5], [1, 2, 3], [], [1, "2"], ["1", 2], [True, 1], {"0": 1}, None):
            message = self.refused("point", value=bad)
            self.assertIn("value must be an array of 2 items (a number, a number)", message)

    def test_open_tuple(self) -> None:
        self.assertEqual(self.accepted("any_ints", value=[]), {"value": []})
        self.assertEqual(self.accepted("any_ints", value=[1, 2, 3]), {"value": [1, 2, 3]})
        for bad in ([1, "2"], [1.0], "12"):
            message = self.refused("any_ints", value=bad)
            self.assertIn("value must be an array of integers", message)

    def test_sequence_and_mapping(self) -> None:
        self.assertEqual(self.accepted("names", value=["a", "b"]), {"value": ["a", "b"]})
        # A JSON string is not an array, though a str is a Sequence.
        for bad in ("ab", ["a", 1], [None]):
            message = self.refused("names", value=bad)
            self.assertIn("value must be an array of strings", message)
        self.assertEqual(self.accepted("counts", value={"x": 2}), {"value": {"x": 2}})
        for bad in ({"x": "2"}, ["x"]):
            message = self.refused("counts", value=bad)
            self.assertIn("value must be an object whose values are integers", message)

    def test_nested(self) -> None:
        grid = [[1, 2], [], [3]]
        self.assertEqual(self.accepted("grid", value=grid), {"value": grid})
        for bad in ([1, 2], [[1], ["2"]], [[1], None], [[[1]]]):
            message = self.refused("grid", value=bad)
            self.assertIn("value must be an array of arrays of integers", message)
        path = [[0, 0], [0, 1]]
        self.assertEqual(self.accepted("path", value=path), {"value": path})
        for bad in ([[0, 0], [0]], [[0, 0.5]], [0, 0]):
            message = self.refused("path", value=bad)
            self.assertIn(
                "value must be an array of arrays of 2 items (an integer, an integer)",
                message,
            )

    def test_optional_container(self) -> None:
        self.assertEqual(self.accepted("maybe_names", value=None), {"value": None})
        self.assertEqual(self.accepted("maybe_names", value=["a"]), {"value": ["a"]})
        for bad in ([None], ["a", 1], "a"):
            message = self.refused("maybe_names", value=bad)
            self.assertIn("value must be an array of strings or null", message)

    def test_any_items_take_anything(self) -> None:
        value, extra = [1, "x", None, [2], {"a": 1}], {"a": [1], "b": None}
        self.assertEqual(
            self.accepted("loose", value=value, extra=extra), {"value": value, "extra": extra}
        )
        self.assertIn("value must be an array", self.refused("loose", value={}, extra={}))
        self.assertIn("extra must be an object", self.refused("loose", value=[], extra=[]))


@pytest.mark.parametrize(
    "annotation", [dict[int, str], typing.Mapping[float, int], dict[Literal["a"], int]]
)
def test_mappings_without_string_keys_fail_at_class_definition(annotation: Any) -> None:
    with pytest.raises(TypeError, match="keys are strings"):

        class Bad(Room):
            @action
            def go(self, player: Player, table: annotation) -> None:  # type: ignore[valid-type]
                pass


def test_mappings_with_any_keys_are_objects() -> None:
    class Fine(Room):
        @action
        def go(self, player: Player, table: dict[Any, int]) -> Any:
            return table

    kit = Harness({"fine": Fine})
    client = kit.connect()
    client.join_or_create("fine")
    assert client.request("go", table={"a": 1})["result"] == {"a": 1}
    reply = client.request("go", table={"a": "1"})
    assert reply["code"] == "bad_arguments"
    assert "table must be an object whose values are integers" in reply["message"]


def test_uncheckable_item_types_fail_at_class_definition() -> None:
    with pytest.raises(TypeError):

        class Bad(Room):
            @action
            def go(self, player: Player, when: list[complex]) -> None:
                pass
