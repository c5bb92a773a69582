"""The reasoning a policy file gives for each decision: the comment block written right above a
field, method or kind, where the file quotes the published text it rests on. TOML decoders drop
comments, so `gateway explain` reads them here, from the file itself."""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^\[\[?kinds\.(\w+)(\.fields|\.methods|\.methods\.params)?\]\]?\s*$")
_KEY = re.compile(r'^(path|name)\s*=\s*"([^"]*)"')


def comment_quotes(path: Path) -> dict[tuple[str, str], str]:
    """(kind, label) -> the comment above it; label is a field path, `<method>:<path>` for a
    method's params, `<method>` for a method, '' for the kind itself."""
    out: dict[tuple[str, str], str] = {}
    comment: list[str] = []
    target: tuple[str, str] | None = None  # a header seen, waiting for its path or name
    method = ""
    text = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#"):
            body = line.lstrip("#").strip()
            if body and not set(body) <= {"-"}:
                comment.append(body)
            continue
        header = _HEADER.match(line)
        if header:
            kind, sub = header.group(1), header.group(2) or ""
            text = " ".join(comment)
            comment = []
            if not sub:
                if text:
                    out[kind, ""] = text
                target = None
            else:
                target = (kind, sub)
            continue
        if not line:
            comment = []
            continue
        key = _KEY.match(line)
        if key and target is not None:
            kind, sub = target
            if sub == ".methods":
                method = key.group(2)
                label = method
            elif sub == ".methods.params":
                label = f"{method}:{key.group(2)}"
            else:
                label = key.group(2)
            if text:
                out[kind, label] = text
            target = None
    return out
