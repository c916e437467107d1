"""The `mask` row stage in Python (componentize-py): the same rules and messages as
transforms/mask (Rust), character for character (Python strings index code points, as the Rust
version iterates Unicode scalar values), including the SHA-256 and HMAC-SHA-256 digests.

Build: componentize-py -d ../../wit -w row-stage componentize app -o ../target/mask_py.wasm
"""

import hashlib
import hmac
import warnings  # noqa: F401  hmac imports it lazily; componentize-py bundles only what app.py imports
from dataclasses import replace
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

RULES = ("phone", "email", "id-number", "sha256", "hmac-sha256", "drop", "null")
TEXT_TYPES = (types.ColumnType_String, types.ColumnType_Varchar, types.ColumnType_FixedChar)

_plan: Optional[Tuple[List[Optional[str]], bytes]] = None
_debug = False


def keep_ends(value: str, head: int, tail: int) -> str:
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail:]


def email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return "*" * len(value)
    return local[:1] + "*" * max(len(local) - 1, 0) + "@" + domain


def apply(rule: str, value: str, key: bytes) -> str:
    if rule == "phone":
        return keep_ends(value, 3, 4)
    if rule == "id-number":
        return keep_ends(value, 6, 4)
    if rule == "email":
        return email(value)
    if rule == "sha256":
        return hashlib.sha256(value.encode()).hexdigest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


class RowTransform(exports.RowTransform):
    def configure(self, config: List[Tuple[str, str]], input: List[types.Column]) -> types.StageInfo:
        global _plan, _debug
        rules: List[Optional[str]] = [None] * len(input)
        key: Optional[bytes] = None
        debug = False
        for k, v in config:
            if k == "hmac-key":
                key = v.encode()
                continue
            if k == "debug":
                if v not in ("true", "false"):
                    raise Err(f"debug = '{v}': use true or false")
                debug = v == "true"
                continue
            if not k.startswith("column."):
                raise Err(f"unknown key '{k}': use column.<name> = <rule>, hmac-key or debug")
            name = k[len("column."):]
            if v not in RULES:
                raise Err(f"{k} = '{v}': the rule must be phone, email, id-number, sha256, hmac-sha256, drop or null")
            index = next((i for i, c in enumerate(input) if c.name.lower() == name.lower()), None)
            if index is None:
                raise Err(f"{k}: the input has no column '{name}'")
            if v not in ("drop", "null") and not isinstance(input[index].ty, TEXT_TYPES):
                raise Err(f"{k}: column '{name}' is not a string column, so it cannot be masked as {v}")
            rules[index] = v
        if "sha256" in rules or "hmac-sha256" in rules:
            try:
                hashlib.sha256(b"probe").hexdigest()
            except Exception as exc:  # the runtime may lack a SHA-256 implementation
                raise Err(f"the Python runtime cannot compute SHA-256 ({type(exc).__name__}: {exc}); use the Rust mask component for digests")
        if "hmac-sha256" in rules:
            if key is None:
                raise Err("a column uses hmac-sha256 but hmac-key is not set")
            if not key:
                raise Err("hmac-key is empty")
        _plan = (rules, key or b"")
        _debug = debug
        output = []
        for column, rule in zip(input, rules):
            if rule == "drop":
                continue
            if rule in ("sha256", "hmac-sha256"):
                output.append(replace(column, ty=types.ColumnType_String()))
            elif rule == "null":
                output.append(replace(column, nullable=True))
            else:
                output.append(column)
        return types.StageInfo(name="mask", version="1.0.0-py", output=output)

    def transform(self, rows: List[types.Row]) -> types.BatchOutput:
        rules, key = _plan if _plan is not None else ([], b"")
        if _debug:
            print(f"mask: {len(rows)} rows")
        out = []
        errors = []
        for row in rows:
            cells = []
            for i, cell in enumerate(row.cells):
                rule = rules[i] if i < len(rules) else None
                if rule is None:
                    cells.append(cell)
                elif rule == "drop":
                    continue
                elif rule == "null":
                    cells.append(types.Cell_Null())
                elif isinstance(cell, types.Cell_String):
                    try:
                        cells.append(types.Cell_String(apply(rule, cell.value, key)))
                    except Exception as exc:
                        errors.append(types.RecordError(source=row.source, kind=types.ErrorKind.INVALID_INPUT, code="mask-failed", message=f"{type(exc).__name__}: {exc}"))
                        cells = None
                        break
                else:
                    cells.append(cell)
            if cells is not None:
                out.append(types.Row(source=row.source, cells=cells))
        return types.BatchOutput(rows=out, errors=errors)
