"""Message plans: what the facade knows of each message type's JSON, computed once per type
(fields by either name, enums in their short form), and a message as the wire writes it.
Shared by REST (codec.py) and the WebSocket bridge (bridge.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from facade.routes import is_map, map_value

JsonObject = dict[str, Any]


# --- enums -----------------------------------------------------------------------------------


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix every value repeats (buf's ENUM_VALUE_PREFIX), e.g. TRADE_SIDE_."""
    names = [v.name for v in enum.values]
    expected = _upper_snake(enum.name) + "_"
    if all(n.startswith(expected) and len(n) > len(expected) for n in names):
        return expected
    if len(names) < 2:
        return ""
    common = names[0]
    for name in names[1:]:
        while not name.startswith(common):
            common = common[:-1]
    return common[: common.rfind("_") + 1]


_NUMBER = re.compile(r"-?[0-9]+")


class EnumNames:
    """Short and long names of one enum: TRADE_SIDE_BUY <-> "buy"."""

    def __init__(self, enum: EnumDescriptor) -> None:
        prefix = enum_prefix(enum)
        self.full_name = enum.full_name
        self.short: dict[str, str] = {}
        self.by_alias: dict[str, str] = {}
        self.numbers: dict[int, str] = {}
        self.number_by_name: dict[str, int] = {}
        for value in enum.values:
            short = value.name[len(prefix) :].lower() if prefix else value.name.lower()
            self.short[value.name] = short
            self.by_alias[short] = value.name
            self.by_alias[value.name.lower()] = value.name
            self.numbers.setdefault(value.number, value.name)
            self.number_by_name[value.name] = value.number
        self.choices = tuple(self.short[v.name] for v in enum.values)

    def resolve(self, value: object) -> str | None:
        """The full value name for `buy`, `BUY`, `trade_side_buy`, `TRADE_SIDE_BUY` or 1."""
        if isinstance(value, str):
            found = self.by_alias.get(value.lower())
            # ASCII digits with at most one sign: "²".isdigit() holds too, and int() refuses
            # "²" and "--1" alike.
            if found is None and _NUMBER.fullmatch(value.strip()):
                return self.numbers.get(int(value))
            return found
        if isinstance(value, int) and not isinstance(value, bool):
            return self.numbers.get(value)
        return None

    def expected(self) -> str:
        return "must be one of: " + ", ".join(self.choices)


# --- message plans ---------------------------------------------------------------------------

SCALAR, ENUM, MESSAGE, WKT = range(4)


@dataclass(eq=False)
class FieldSpec:
    field: FieldDescriptor
    kind: int
    repeated: bool
    enum: EnumNames | None = None
    message: MessagePlan | None = None
    map_value: FieldSpec | None = None


@dataclass(eq=False)
class MessagePlan:
    """How to check and rewrite one message type's JSON, computed once per type."""

    descriptor: Descriptor
    by_key: dict[str, FieldSpec] = field(default_factory=dict)
    # Output: the fields (by JSON name) whose values hold enums somewhere below.
    enum_fields: list[tuple[str, FieldSpec]] = field(default_factory=list)

    @property
    def known(self) -> str:
        return ", ".join(f.json_name for f in self.descriptor.fields)


class Plans:
    """Every message type's plan, built on first use and shared by all routes."""

    def __init__(self) -> None:
        self._plans: dict[str, MessagePlan] = {}
        self._enums: dict[str, EnumNames] = {}

    def enum(self, enum: EnumDescriptor) -> EnumNames:
        found = self._enums.get(enum.full_name)
        if found is None:
            found = self._enums[enum.full_name] = EnumNames(enum)
        return found

    def plan(self, descriptor: Descriptor) -> MessagePlan:
        found = self._plans.get(descriptor.full_name)
        if found is not None:
            return found
        plan = self._build(descriptor)
        self._mark_enum_fields()
        return plan

    def _build(self, descriptor: Descriptor) -> MessagePlan:
        found = self._plans.get(descriptor.full_name)
        if found is not None:
            return found
        plan = self._plans[descriptor.full_name] = MessagePlan(descriptor)
        for fd in descriptor.fields:
            spec = self._spec(fd)
            plan.by_key[fd.json_name] = spec
            plan.by_key[fd.name] = spec
        return plan

    def _spec(self, fd: FieldDescriptor) -> FieldSpec:
        if is_map(fd):
            value = self._spec(map_value(fd))
            return FieldSpec(fd, MESSAGE, False, map_value=value)
        if fd.enum_type is not None:
            return FieldSpec(fd, ENUM, fd.is_repeated, enum=self.enum(fd.enum_type))
        if fd.message_type is not None:
            if fd.message_type.full_name.startswith("google.protobuf."):
                return FieldSpec(fd, WKT, fd.is_repeated)
            return FieldSpec(fd, MESSAGE, fd.is_repeated, message=self._build(fd.message_type))
        return FieldSpec(fd, SCALAR, fd.is_repeated)

    def _mark_enum_fields(self) -> None:
        """Which fields lead to enums: a fixed point, so recursive types come out right."""
        carriers: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, plan in self._plans.items():
                if name not in carriers and any(
                    self._carries(spec, carriers) for spec in plan.by_key.values()
                ):
                    carriers.add(name)
                    changed = True
        for plan in self._plans.values():
            plan.enum_fields = [
                (spec.field.json_name, spec)
                for key, spec in plan.by_key.items()
                if key == spec.field.json_name and self._carries(spec, carriers)
            ]

    def _carries(self, spec: FieldSpec, carriers: set[str]) -> bool:
        if spec.map_value is not None:
            return self._carries(spec.map_value, carriers)
        if spec.kind == ENUM:
            return True
        return spec.message is not None and spec.message.descriptor.full_name in carriers


def message_json(message: Message, plan: MessagePlan) -> JsonObject:
    """A message as the wire writes it: the proto3 JSON mapping with every field present and
    enums in their short form. `plan` is the message type's (Plans.plan)."""
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    if plan.enum_fields:
        shorten_enums(data, plan)
    return data


def shorten_enums(value: JsonObject, plan: MessagePlan) -> None:
    """Rewrite enum names in MessageToDict output to their short lowercase form, in place."""
    for key, spec in plan.enum_fields:
        item = value.get(key)
        if item is None:
            continue
        if spec.map_value is not None:
            for map_key, map_item in item.items():
                item[map_key] = _shorten(map_item, spec.map_value)
        elif spec.repeated:
            for index, element in enumerate(item):
                item[index] = _shorten(element, spec)
        else:
            value[key] = _shorten(item, spec)


def _shorten(value: Any, spec: FieldSpec) -> Any:
    if spec.enum is not None:
        return spec.enum.short.get(value, value) if isinstance(value, str) else value
    if spec.message is not None and isinstance(value, dict):
        shorten_enums(value, spec.message)
    return value
