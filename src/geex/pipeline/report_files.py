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
        path = self.path(relative)
        if not path.exists():
            return None
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            self.damaged(relative, f"not JSON at line {err.lineno}", left_out)
            return None
        except (OSError, UnicodeDecodeError) as err:
            self.damaged(relative, _reason(err), left_out)
            return None
        if not isinstance(fields, dict):
            self.damaged(relative, "not a JSON object", left_out)
            return None
        return fields

    def yaml(self, relative: str, left_out: str) -> dict | None:
        """The YAML mapping in ``relative``; None when it is not there or is damaged."""
        path = self.path(relative)
        if not path.exists():
            return None
        try:
            fields = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            self.damaged(relative, f"not YAML{where}", left_out)
            return None
        except (OSError, UnicodeDecodeError) as err:
            self.damaged(relative, _reason(err), left_out)
            return None
        if not isinstance(fields, dict):
            self.damaged(relative, "not a YAML mapping", left_out)
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


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."
