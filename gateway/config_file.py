"""Reading `gateway.toml` as text: `${VAR}` interpolation, and where in the file a setting is.

Kept apart from the settings themselves (`config.py`): this is about the file, not the
gateway. A problem names the file, the line (when it can be found) and the setting, never an
interpolated value (it may be a secret).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Path_ = tuple[str | int, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")
_MSGSPEC_AT = re.compile(r" - at `\$([^`]*)`$")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, one line: `file:line: setting: message`."""

    file: str
    setting: str
    message: str
    line: int | None = None
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.setting}: " if self.setting else ""
        prefix = "warning: " if self.level == "warning" else ""
        return f"{prefix}{where + ': ' if where else ''}{what}{self.message}"


def dotted(path: Path_) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def undotted(setting: str) -> Path_:
    """The inverse of `dotted`: "sinks[0].file.dir" -> ("sinks", 0, "file", "dir")."""
    steps: list[str | int] = []
    for name, index in _STEP.findall("." + setting):
        steps.append(int(index) if index else name)
    return tuple(steps)


def interpolate(
    doc: Any, env: Mapping[str, str], path: Path_ = ()
) -> tuple[Any, list[tuple[Path_, str]]]:
    """`${VAR}` and `${VAR:-default}` (default also when VAR is empty) in every string value.
    Returns the new document and the (setting, variable) pairs that were unset."""
    if isinstance(doc, str):
        missing: list[tuple[Path_, str]] = []

        def sub(m: re.Match[str]) -> str:
            value = env.get(m[1], "")
            if value:
                return value
            if m[2] is not None:
                return m[3]
            missing.append((path, m[1]))
            return ""

        return _VAR.sub(sub, doc), missing
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        missing = []
        for k, v in doc.items():
            out[k], m = interpolate(v, env, (*path, k))
            missing += m
        return out, missing
    if isinstance(doc, list):
        items, missing = [], []
        for i, v in enumerate(doc):
            item, m = interpolate(v, env, (*path, i))
            items.append(item)
            missing += m
        return items, missing
    return doc, []


def split_msgspec_error(msg: str) -> tuple[Path_, str]:
    """msgspec's "Expected `int`, got `str` - at `$.source.port`" -> (("source","port"), ...)."""
    m = _MSGSPEC_AT.search(msg)
    if m is None:
        return (), msg
    steps: list[str | int] = []
    for name, index in _STEP.findall(m[1]):
        steps.append(int(index) if index else name)
    return tuple(steps), msg[: m.start()]


def toml_error_line(msg: str) -> tuple[int | None, str]:
    m = _TOML_LINE.search(msg)
    if m is None:
        return None, msg
    return int(m[1]), (msg[: m.start()] + msg[m.end() :]).strip()


_HEADER = re.compile(r"^\[(\[)?\s*([^\]]+?)\s*\]\]?$")
_KEY = re.compile(r'^([A-Za-z0-9_\-."\' ]+?)\s*=')


def _keys(text: str) -> list[str]:
    return [k.strip().strip("\"'") for k in text.split(".")]


def locate(text: str, path: Path_) -> int | None:
    """The line that sets `path` (or the closest enclosing table or key). A line scanner, not
    a TOML parser: good enough to point an operator at the right line."""
    tables: dict[tuple[str, ...], int] = {}  # array-of-tables -> index of the last one
    current: Path_ = ()
    best: tuple[int, int] | None = None  # (matched depth, line)

    def consider(full: Path_, line: int) -> None:
        nonlocal best
        if full == path[: len(full)] and (best is None or len(full) > best[0]):
            best = (len(full), line)

    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
        if m := _HEADER.match(s):
            names = _keys(m[2])
            full: list[str | int] = []
            for i, name in enumerate(names):
                full.append(name)
                key = tuple(names[: i + 1])
                if m[1] and i == len(names) - 1:
                    tables[key] = tables.get(key, -1) + 1
                if key in tables:
                    full.append(tables[key])
            current = tuple(full)
            consider(current, n)
        elif m := _KEY.match(s):
            consider((*current, *_keys(m[1])), n)
    return best[1] if best else None
