"""Reading a run folder for the report, where a damaged file becomes a note in the report.

A file that is not there is a stage that has not run, and its section is simply left out; a
file that is there but cannot be read is named in the report with what is wrong and what was
left out because of it, so that no section goes missing without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from geex.errors import GeexError


class RunFolder:
    """The run folder as the report reads it, keeping a note per damaged file."""

    def __init__(self, out: Path):
        self.out = out
        self.notes: list[str] = []

    def path(self, relative: str) -> Path:
        return self.out / relative

    def damaged(self, relative: str, why: str, left_out: str) -> None:
        self.notes.append(f"{relative} is damaged ({why}): {left_out}")

    def json(self, relative: str, left_out: str) -> dict | None:
        """The JSON object in ``relative``; None when it is not there or is damaged."""
        return self._mapping(relative, left_out, _parse_json, "a JSON object")

    def yaml(self, relative: str, left_out: str) -> dict | None:
        """The YAML mapping in ``relative``; None when it is not there or is damaged."""
        return self._mapping(relative, left_out, _parse_yaml, "a YAML mapping")

    def _mapping(self, relative: str, left_out: str, parse: Callable, kind: str) -> dict | None:
        path = self.path(relative)
        if not path.exists():
            return None
        try:
            fields = parse(path.read_text(encoding="utf-8"))
        except _Unparsable as err:
            self.damaged(relative, str(err), left_out)
            return None
        except (OSError, UnicodeDecodeError) as err:
            self.damaged(relative, _reason(err), left_out)
            return None
        if not isinstance(fields, dict):
            self.damaged(relative, f"not {kind}", left_out)
            return None
        return fields

    def section(self, relative: str, left_out: str, build: Callable, *args):
        """``build(*args)``, or None with a note naming ``relative`` when what it read from there
        lacks a field or holds a value of the wrong kind."""
        try:
            return build(*args)
        except KeyError as err:
            self.damaged(relative, f"no field {err}", left_out)
        except (TypeError, ValueError, AttributeError, IndexError, GeexError) as err:
            self.damaged(relative, _reason(err), left_out)
        return None


class _Unparsable(Exception):
    """A file's text is not in its format; the message says where."""


def _parse_json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _Unparsable(f"not JSON at line {err.lineno}") from None


def _parse_yaml(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise _Unparsable("not YAML" + (f" at line {mark.line + 1}" if mark else "")) from None


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."
