"""Typed configs from plain fields: the one strict reader behind YAML files, run files and flags.

Every config in Geex is a dataclass. A YAML file, a section of a run file and the command line
all become a dict of fields, and :func:`from_dict` turns that dict into the dataclass. It is
strict because a typo should stop a run before it starts rather than be ignored for hours: an
unknown name is refused with its full dotted name, the closest valid name and the list of
valid ones, and a value of the wrong type is refused with its name and the type it needs.
Values that YAML reads loosely are coerced where the meaning is plain: ``3e-4`` arrives as a
string, ``1`` as an int for a float field, ``[0.9, 0.95]`` as a list for a tuple field.

What the command line needs to know about a field (help, flag names, choices) is in the
field's metadata, written with :func:`option`; :mod:`geex.cli.flags` builds the flags from it,
so adding an option is adding one field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from geex.errors import ConfigError, GeexError


@dataclass(frozen=True)
class FlagSpec:
    """How one config field appears on the command line.

    ``flags`` default to ``--field-name``; a bool field whose flag starts with ``--no-`` turns
    the field off. ``parse`` reads one command-line word into the field's value (e.g. MB into
    bytes); ``to_field`` turns the collected words into the value (e.g. KEY=VALUE pairs into a
    dict). ``negation`` is a second flag that sets a fixed value, exclusive with the first
    (``--no-dedup`` sets ``dedup`` to ``"none"``). ``subflags`` makes flags of some fields of
    another config whose fields this dict field holds (``geex run --preset`` is
    ``train.preset``). ``flag=False`` keeps a field off the command line on purpose.
    """

    help: str | None = None
    flags: tuple[str, ...] = ()
    choices: tuple | None = None
    metavar: str | tuple[str, ...] | None = None
    parse: Callable[[str], Any] | None = None
    to_field: Callable[[Any], Any] | None = None
    append: bool = False
    negation: tuple[str, Any] | None = None
    group: str | None = None
    subflags: tuple[type, tuple[str, ...]] | None = None
    flag: bool = True

    @property
    def allowed(self) -> tuple | None:
        """Every value the field may take when it has choices: the choices and the negation."""
        if self.choices is None:
            return None
        return (*self.choices, self.negation[1]) if self.negation else tuple(self.choices)


def option(default: Any = MISSING, *, default_factory: Any = MISSING, **spec) -> Any:
    """A dataclass field with its command-line spec (see :class:`FlagSpec` for ``spec``)."""
    if isinstance(spec.get("flags"), str):
        spec["flags"] = (spec["flags"],)
    if spec.get("choices") is not None:
        spec["choices"] = tuple(spec["choices"])
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"flag": FlagSpec(**spec)}
    )


def flag_spec(field: dataclasses.Field) -> FlagSpec:
    """A field's command-line spec; a field written without :func:`option` gets the defaults."""
    return field.metadata.get("flag") or FlagSpec()


def field_types(cls) -> dict[str, Any]:
    """The resolved annotations of a config class (``from __future__ import annotations``
    leaves them as strings)."""
    return typing.get_type_hints(cls)


def from_dict(cls, fields: Mapping, where: str = "", *, kind: str = ""):
    """``cls`` from plain fields, nested configs included, refusing what ``cls`` cannot take.

    ``where`` is the dotted name of ``fields`` inside the file (``"eval"`` for a run file's
    eval section) and ``kind`` names the file in messages (``"run"``: "unknown run config
    field 'eval.temprature'"). Errors raised by ``cls``'s own checks are prefixed with
    ``where`` unless they already name it.
    """
    label = f"{kind} config" if kind else "config"
    if not isinstance(fields, Mapping):
        raise ConfigError(
            f"{where or label} must be a mapping of {cls.__name__} fields, got {fields!r}"
        )
    known = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in known]
    for name in fields:
        if name not in names:
            full = dotted_name(where, name)
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            scope = f" of {where}" if where else ""
            raise ConfigError(
                f"unknown {label} field {full!r}{hint}; valid fields{scope}: {', '.join(names)}"
            )
    types_ = field_types(cls)
    values = {}
    for field in known:
        if field.name in fields:
            full = dotted_name(where, field.name)
            value = coerce(types_[field.name], fields[field.name], full, kind)
            allowed = flag_spec(field).allowed
            if allowed is not None and value not in allowed:
                raise ConfigError(
                    f"{label} field {full!r} must be one of {', '.join(map(str, allowed))}, "
                    f"got {value!r}"
                )
            values[field.name] = value
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where or label}: {err}") from None
    except ConfigError as err:
        if not where or str(err).startswith(f"{where}."):
            raise
        raise ConfigError(f"{where}: {err}") from None


def coerce(annotation: Any, value: Any, name: str, kind: str = "") -> Any:
    """``value`` as the ``annotation`` type, or a ConfigError naming the field ``name``."""
    label = f"{kind} config" if kind else "config"

    def refuse(expected: str) -> ConfigError:
        return ConfigError(f"{label} field {name!r} must be {expected}, got {value!r}")

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option_type in options:
            try:
                return coerce(option_type, value, name, kind)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else refuse(" or ".join(map(_describe, options)))
    if origin is Literal:
        if value in args:
            return value
        raise refuse(f"one of {', '.join(map(str, args))}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return from_dict(annotation, value, name, kind=kind)
        raise refuse(f"a mapping of {annotation.__name__} fields")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise refuse("true or false")
    if annotation is int:
        number = _number(value)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if isinstance(number, int):
            return number
        raise refuse("an integer")
    if annotation is float:
        number = _number(value)
        if number is None:
            raise refuse("a number")
        return float(number)
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (Path, int, float)) and not isinstance(value, bool):
            return str(value)
        raise refuse("a string")
    if annotation is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise refuse("a path")
    if annotation is list or origin is list:
        if isinstance(value, str):  # iterating it would take each character for an item
            leaf = name.rsplit(".", 1)[-1]
            raise refuse(f"a list (for one item write {leaf}: [{value}])")
        if not isinstance(value, (list, tuple)):
            raise refuse("a list")
        item = args[0] if args else Any
        return [coerce(item, v, f"{name}[{i}]", kind) for i, v in enumerate(value)]
    if annotation is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise refuse("a list")
        if not args or args[-1] is Ellipsis:
            item = args[0] if args else Any
            return tuple(coerce(item, v, f"{name}[{i}]", kind) for i, v in enumerate(value))
        if len(value) != len(args):
            raise refuse(f"a list of {len(args)} values")
        return tuple(
            coerce(t, v, f"{name}[{i}]", kind)
            for i, (t, v) in enumerate(zip(args, value, strict=True))
        )
    if annotation is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise refuse("a mapping")
        if not args:
            return dict(value)
        key_type, value_type = args
        return {
            coerce(key_type, k, name, kind): coerce(value_type, v, f"{name}.{k}", kind)
            for k, v in value.items()
        }
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise refuse(_describe(annotation))
    return value


def _number(value: Any) -> int | float | None:
    """An int or float from a number or a numeric string (YAML reads ``3e-4`` as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        word = value.strip()
        try:
            return int(word)
        except ValueError:
            pass
        try:
            number = float(word)
        except ValueError:
            return None
        # "1e23" is the integer it names, not its nearest float (99999999999999991611392).
        return int(Decimal(word)) if number.is_integer() else number
    return None


def _describe(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def dotted_name(where: str, name: str) -> str:
    """A field's name as the user writes it: ``train.lr``."""
    return f"{where}.{name}" if where else str(name)


def read_yaml_fields(path: str | os.PathLike, what: str) -> dict:
    """The mapping of fields in the YAML file ``path``, or a one-line ConfigError naming the file.

    ``what`` names the file in messages ("run file"). An empty file is refused rather than read
    as no fields: a file given on purpose and left empty (a failed copy, a wrong path written
    over) would otherwise start a default run silently.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the {what} {path}: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"the {what} {path} is not text (byte {err.start} is not UTF-8): give a YAML file"
        ) from None
    try:
        fields = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"the {what} {path} is not valid YAML: {_yaml_problem(err)}") from None
    if fields is None:
        raise ConfigError(f"{what} {path} is empty: write the fields it sets, or leave it out")
    if not isinstance(fields, dict):
        raise ConfigError(
            f"the {what} {path} must hold a mapping of fields (name: value), "
            f"got {_describe(type(fields))}"
        )
    return fields


def read_json_object(path: Path) -> dict:
    """The JSON object in the file ``path`` (a model folder's ``config.json``, its
    ``generation_config.json``), or a one-line GeexError naming the file."""
    try:
        fields = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise GeexError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(fields, dict):
        raise GeexError(f"{path} is not a JSON object")
    return fields


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if problem and mark:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(err).splitlines()[0]


# Readers of one command-line word, for fields whose flag is written differently from the field.


def megabytes(word: str) -> int:
    """``0.5`` (MB on the command line) as bytes."""
    try:
        return int(float(word) * 2**20)
    except (ValueError, OverflowError):  # not a number, nan, inf
        raise ConfigError(f"wants a number of MB; got {word!r}") from None


def comma_list(word: str) -> list[str]:
    """``python,go`` as ``["python", "go"]``."""
    return [item.strip() for item in word.split(",") if item.strip()]


def key_value(word: str) -> tuple[str, str]:
    """``account=myproj`` as ``("account", "myproj")``."""
    key, sep, value = word.partition("=")
    if not sep:
        raise ConfigError(f"wants KEY=VALUE; got {word!r}")
    return key, value


def one_value_each(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """KEY=VALUE words as a dict, refusing a key given twice (the last would win silently)."""
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise ConfigError(f"{key} is given twice ({values[key]} and {value})")
        values[key] = value
    return values
