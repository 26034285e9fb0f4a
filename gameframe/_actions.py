"""The @action decorator and argument checking built from a handler's signature."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
import weakref
from typing import Any, Callable, TypeVar, Union

import attrs

from gameframe.codec import BAD_ARGUMENTS, GameError
from gameframe.vocabulary import LOBBY_ACTIONS

F = TypeVar("F", bound=Callable[..., Any])

# Fields of every message that are the protocol's, never a handler's argument.
RESERVED_FIELDS = frozenset({"action", "id"})

_ACTION_NAME = "__gameframe_action__"
_ACTION_RATE = "__gameframe_action_rate__"

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)


def action(
    name_or_func: Any = None, *, rate: float | None = None, burst: int | None = None
) -> Any:
    """
    Declare a Room method as the handler of a client action.

    Use it bare (the action is the method's name), with a name, or with a
    rate limit of its own::

        @action
        def place(self, player: Player, cell: int) -> None: ...

        @action("chat", rate=2, burst=5)
        def say(self, player: Player, text: str) -> None: ...

    The message's fields become keyword arguments; their types are checked
    against the annotations before the handler runs (C{bad_arguments}).
    With C{rate}, each player may call it C{rate} times a second sustained,
    C{burst} (default: C{rate}, at least 1) at once; more is refused with
    C{rate_limited}.
    """
    if rate is not None and not rate > 0:
        raise ValueError("action rate must be a positive number of calls per second")
    limit = None if rate is None else (float(rate), burst if burst is not None else rate)
    if callable(name_or_func):
        setattr(name_or_func, _ACTION_NAME, name_or_func.__name__)
        setattr(name_or_func, _ACTION_RATE, limit)
        return name_or_func

    def mark(func: F) -> F:
        setattr(func, _ACTION_NAME, name_or_func or func.__name__)
        setattr(func, _ACTION_RATE, limit)
        return func

    return mark


Checker = Callable[[Any], bool]

_SEQUENCES = (list, typing.List, typing.Sequence, collections.abc.Sequence)
_MAPPINGS = (dict, typing.Dict, typing.Mapping, collections.abc.Mapping)


def _anything(value: Any) -> bool:
    return True


@attrs.frozen
class _Check:
    """A predicate for one annotation, and how to name its type: one, and several."""

    check: Checker
    name: str
    plural: str


def _checker_for(annotation: Any) -> tuple[Checker, str]:
    """A predicate for one annotation, and how to name the type in errors."""
    described = _describe(annotation)
    return described.check, described.name


def _describe(annotation: Any) -> _Check:
    """
    Check a JSON value against an annotation, recursively for containers.

    @raise TypeError: the annotation cannot be checked against JSON.
    """
    if annotation is inspect.Parameter.empty or annotation is Any:
        return _Check(_anything, "any", "values of any type")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union or origin is types.UnionType:
        parts = [_describe(arg) for arg in args]
        checks = [part.check for part in parts]
        return _Check(
            lambda value: any(check(value) for check in checks),
            " or ".join(part.name for part in parts),
            " or ".join(part.plural for part in parts),
        )
    if origin is typing.Literal:
        allowed = args
        listed = ", ".join(repr(a) for a in allowed)
        return _Check(
            lambda value: any(type(value) is type(a) and value == a for a in allowed),
            "one of " + listed,
            "values among " + listed,
        )
    if annotation in (tuple, typing.Tuple):  # bare: any array
        return _Check(_is_array, "an array", "arrays")
    if origin is tuple:
        return _tuple_of(annotation, args)
    if origin is not None:
        annotation = origin
    if annotation is type(None) or annotation is None:
        return _Check(lambda value: value is None, "null", "nulls")
    if annotation is bool:
        return _Check(lambda value: type(value) is bool, "a boolean", "booleans")
    if annotation is int:
        return _Check(lambda value: type(value) is int, "an integer", "integers")
    if annotation is float:
        return _Check(lambda value: type(value) in (int, float), "a number", "numbers")
    if annotation is str:
        return _Check(lambda value: type(value) is str, "a string", "strings")
    if annotation in _SEQUENCES and len(args) <= 1:
        return _array_of(args[0] if args else Any)
    if annotation in _MAPPINGS:
        return _object_of(args)
    raise TypeError(f"gameframe cannot check arguments of type {annotation!r}")


def _is_array(value: Any) -> bool:
    return type(value) is list


def _is_object(value: Any) -> bool:
    return type(value) is dict


def _array_of(item_type: Any) -> _Check:
    """list[X], Sequence[X], tuple[X, ...]: an array whose every item is an X."""
    if item_type is Any:
        return _Check(_is_array, "an array", "arrays")
    item = _describe(item_type)
    check_item = item.check
    return _Check(
        lambda value: type(value) is list and all(check_item(v) for v in value),
        f"an array of {item.plural}",
        f"arrays of {item.plural}",
    )


def _tuple_of(annotation: Any, args: tuple[Any, ...]) -> _Check:
    """tuple[A, B]: an array of exactly that many items, each of its type."""
    if len(args) == 2 and args[1] is Ellipsis:
        return _array_of(args[0])
    if not args:  # tuple[()]
        return _Check(
            lambda value: type(value) is list and not value, "an empty array", "empty arrays"
        )
    if Ellipsis in args:
        raise TypeError(f"gameframe cannot check arguments of type {annotation!r}")
    items = [_describe(arg) for arg in args]
    checks = [item.check for item in items]
    size = len(checks)
    what = f"{size} item{'s' if size > 1 else ''} ({', '.join(i.name for i in items)})"
    return _Check(
        lambda value: type(value) is list
        and len(value) == size
        and all(check(v) for check, v in zip(checks, value)),
        f"an array of {what}",
        f"arrays of {what}",
    )


def _object_of(args: tuple[Any, ...]) -> _Check:
    """dict[str, V], Mapping[str, V]: an object whose every value is a V."""
    if not args:
        return _Check(_is_object, "an object", "objects")
    if len(args) != 2:
        raise TypeError(f"gameframe cannot check a mapping typed with {args!r}")
    key_type, value_type = args
    if key_type is not str and key_type is not Any:
        raise TypeError(
            f"gameframe cannot check a mapping with {key_type!r} keys:"
            " JSON object keys are strings, use str"
        )
    if value_type is Any:
        return _Check(_is_object, "an object", "objects")
    value = _describe(value_type)
    check_value = value.check
    return _Check(
        lambda obj: type(obj) is dict and all(check_value(v) for v in obj.values()),
        f"an object whose values are {value.plural}",
        f"objects whose values are {value.plural}",
    )


@attrs.frozen
class Argument:
    name: str
    required: bool
    check: Checker
    type_name: str


@attrs.frozen
class ActionSpec:
    """How to call one handler: its arguments, checked before the call."""

    name: str
    method_name: str
    arguments: tuple[Argument, ...]
    known: frozenset[str]
    accepts_any: bool
    # The handler's own leading parameters (self, player): never message fields.
    bound: frozenset[str] = frozenset()
    # (calls per second, burst) per player, or None: no limit of its own.
    rate: tuple[float, float] | None = None

    @classmethod
    def from_function(cls, name: str, func: Callable[..., Any]) -> ActionSpec:
        hints = typing.get_type_hints(func)
        all_params = list(inspect.signature(func).parameters.values())
        bound, params = all_params[:2], all_params[2:]  # self, player
        if len(bound) < 2 or any(p.kind not in _POSITIONAL for p in bound):
            raise TypeError(f"action {name!r}: a handler takes (self, player, ...)")
        arguments = []
        accepts_any = False
        for param in params:
            if param.kind is param.VAR_KEYWORD:
                accepts_any = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
                raise TypeError(f"action {name!r}: arguments must be keywords")
            if param.name in RESERVED_FIELDS:
                raise TypeError(f"action {name!r}: {param.name!r} is reserved")
            check, type_name = _checker_for(hints.get(param.name, param.empty))
            arguments.append(
                Argument(param.name, param.default is param.empty, check, type_name)
            )
        return cls(
            name,
            func.__name__,
            tuple(arguments),
            frozenset(a.name for a in arguments),
            accepts_any,
            frozenset(p.name for p in bound),
            getattr(func, _ACTION_RATE, None),
        )

    def arguments_of(self, message: dict[str, Any]) -> dict[str, Any]:
        """
        The handler's keyword arguments taken from a message.

        @raise GameError: C{bad_arguments}, naming what is wrong.
        """
        kwargs = dict(message)
        del kwargs["action"]
        kwargs.pop("id", None)
        if not self.known.issuperset(kwargs):
            extra = kwargs.keys() - self.known
            if self.accepts_any:
                extra &= self.bound  # **kwargs takes anything but these
            if extra:
                raise GameError(
                    BAD_ARGUMENTS,
                    f"{self.name}: unexpected field(s) {', '.join(sorted(extra))}",
                )
        for arg in self.arguments:
            if arg.name in kwargs:
                if not arg.check(kwargs[arg.name]):
                    raise GameError(
                        BAD_ARGUMENTS, f"{self.name}: {arg.name} must be {arg.type_name}"
                    )
            elif arg.required:
                raise GameError(BAD_ARGUMENTS, f"{self.name}: {arg.name} is required")
        return kwargs


def collect_actions(cls: type) -> dict[str, ActionSpec]:
    """Every @action of a class and its bases, by action name."""
    specs: dict[str, ActionSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            name = getattr(value, _ACTION_NAME, None)
            if name in LOBBY_ACTIONS:
                raise TypeError(
                    f"{cls.__name__}.{attr}: {name!r} is a lobby action; pick another name"
                )
            if name is not None:
                specs[name] = ActionSpec.from_function(name, value)
    return specs


# Each Room class's actions, kept outside the class so no name of the
# author's can shadow them.
_SPECS: weakref.WeakKeyDictionary[type, dict[str, ActionSpec]] = weakref.WeakKeyDictionary()


def register_actions(cls: type) -> None:
    """Collect a Room class's actions when it is defined (errors surface then)."""
    _SPECS[cls] = collect_actions(cls)


def actions_of(cls: type) -> dict[str, ActionSpec]:
    """A Room class's actions, by action name."""
    specs = _SPECS.get(cls)
    if specs is None:
        specs = _SPECS[cls] = collect_actions(cls)
    return specs
