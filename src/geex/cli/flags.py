"""Command-line flags made from a config dataclass, and read back through the config's reader.

Each field's :class:`geex.config.FlagSpec` (written with :func:`geex.config.option`) says its
flag names, help and choices; :func:`add_config_flags` adds one flag per field, nested configs
included (``--lr`` is ``optim.lr``), and :func:`flag_values` reads back the flags that were
given, by dotted field name. A flag that was not given is absent, so a config file's value or
the dataclass's default stands. A new option is therefore one field; nothing here changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

from geex.config import FlagSpec, field_types, flag_spec, from_dict
from geex.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ConfigFlag:
    """One field of a config as the command line sees it."""

    path: str  # dotted field name, e.g. "optim.lr"; also the argparse dest
    field: dataclasses.Field
    annotation: Any
    spec: FlagSpec

    @property
    def names(self) -> tuple[str, ...]:
        return self.spec.flags or ("--" + self.field.name.replace("_", "-"),)

    @property
    def required(self) -> bool:
        return self.field.default is dataclasses.MISSING and (
            self.field.default_factory is dataclasses.MISSING
        )


def config_flags(cls, where: str = "") -> Iterator[ConfigFlag]:
    """The fields of ``cls`` that are flags, nested configs' fields included."""
    types_ = field_types(cls)
    for field in dataclasses.fields(cls):
        spec, annotation = flag_spec(field), types_[field.name]
        path = f"{where}.{field.name}" if where else field.name
        if not spec.flag:
            continue
        if dataclasses.is_dataclass(annotation):
            yield from config_flags(annotation, path)
        elif spec.subflags:
            holder, chosen = spec.subflags
            for flag in config_flags(holder, path):
                if flag.path[len(path) + 1 :].split(".")[0] in chosen:
                    yield flag
        else:
            yield ConfigFlag(path, field, annotation, spec)


def add_config_flags(parser, cls) -> None:
    """One flag per field of ``cls`` (see :class:`geex.config.FlagSpec`) on ``parser``."""
    groups: dict[str, Any] = {}
    for flag in config_flags(cls):
        target = parser
        if flag.spec.group:
            if flag.spec.group not in groups:
                groups[flag.spec.group] = parser.add_argument_group(flag.spec.group)
            target = groups[flag.spec.group]
        if flag.spec.negation:
            target = target.add_mutually_exclusive_group()
        target.add_argument(*flag.names, **_argument(flag))
        if flag.spec.negation:
            name, value = flag.spec.negation
            target.add_argument(
                name, dest=flag.path, action="store_const", const=value, default=argparse.SUPPRESS
            )


def flag_values(cls, args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``cls`` that were given, by dotted field name, as field values."""
    values = {}
    for flag in config_flags(cls):
        if hasattr(args, flag.path):
            value = getattr(args, flag.path)
            values[flag.path] = flag.spec.to_field(value) if flag.spec.to_field else value
    return values


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted names as nested mappings: {"optim.lr": 1} -> {"optim": {"lr": 1}}."""
    fields: dict[str, Any] = {}
    for path, value in values.items():
        *sections, name = path.split(".")
        target = fields
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return fields


def config_from_args(cls, args: argparse.Namespace, **fields):
    """``cls`` from the given flags (and ``fields`` beside them), read by :func:`from_dict`."""
    return from_dict(cls, {**nested(flag_values(cls, args)), **fields})


def _argument(flag: ConfigFlag) -> dict[str, Any]:
    """``add_argument``'s keywords for one field."""
    spec, annotation = flag.spec, _unwrap_optional(flag.annotation)
    kwargs: dict[str, Any] = {"dest": flag.path, "default": argparse.SUPPRESS, "help": spec.help}
    if flag.required:
        kwargs["required"] = True
    if annotation is bool:
        off = flag.names[0].startswith("--no-")
        kwargs["action"] = "store_false" if off else "store_true"
        return kwargs
    if spec.append:
        kwargs["action"] = "append"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if spec.parse is not None:
        kwargs["type"] = _word_reader(spec.parse)
    elif origin is list:
        kwargs.update(nargs="+", type=_scalar(args[0]) if args else str)
    elif origin is tuple:
        nargs = "+" if args[-1] is Ellipsis else len(args)
        kwargs.update(nargs=nargs, type=_scalar(args[0]))
    else:
        kwargs["type"] = _scalar(annotation)
    if spec.choices is not None:
        kwargs["choices"] = spec.choices
    elif origin is Literal:
        kwargs["choices"] = args
    kwargs["metavar"] = spec.metavar or (
        None if "choices" in kwargs else flag.names[0].lstrip("-").replace("-", "_").upper()
    )
    return kwargs


def _unwrap_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else annotation


def _scalar(annotation: Any):
    """The argparse ``type`` of a scalar field: a string, which :func:`geex.config.from_dict`
    reads as YAML values are read, so that a bad number (``--seed 1e23``, ``--top-k x``) is the
    config layer's one-line error naming the field, not argparse's usage dump."""
    return str


def _word_reader(parse):
    """``parse`` with its ConfigError shown by argparse as the message it is."""

    def read(word: str):
        try:
            return parse(word)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    read.__name__ = parse.__name__  # argparse names the reader in its other messages
    return read
