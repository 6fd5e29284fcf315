"""Indented JSON, fast and in pieces: the same text as ``json.dumps(document, indent=2)``.

The standard library's indenting encoder is pure Python and builds one string; a batch prints
and records one document for every user (10 000 users: about 20 MB). Here each string goes
through the C escaper, and the text is handed to ``write`` in pieces of about 64 KiB.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

_escape = json.encoder.encode_basestring_ascii
_FLUSH_AT = 4096  # pieces


def _flat(value: list[Any] | dict[Any, Any]) -> bool:
    """A list of strings, or a dict of strings keyed by strings: written with one join."""
    if isinstance(value, list):
        return all(type(item) is str for item in value)
    return all(type(k) is str and type(v) is str for k, v in value.items())


def _flat_text(value: list[Any] | dict[Any, Any], pad: str) -> str:
    """``value`` (non-empty and :func:`_flat`) as json.dumps(indent=2) writes it at ``pad``."""
    inner = pad + "  "
    if isinstance(value, list):
        return "[" + inner + ("," + inner).join(map(_escape, value)) + pad + "]"
    items = (_escape(k) + ": " + _escape(v) for k, v in value.items())
    return "{" + inner + ("," + inner).join(items) + pad + "}"


def write_indented(document: Any, write: Callable[[str], object]) -> None:
    """Write ``json.dumps(document, indent=2)`` through ``write``, in pieces. An iterator (a
    generator) in the document is written as the list it yields, one item at a time, so a
    long list need never be held whole."""
    pieces: list[str] = []
    append = pieces.append

    def emit(obj: Any, pad: str) -> None:
        kind = type(obj)
        if kind is str:
            append(_escape(obj))
        elif kind is dict:
            if not obj:
                append("{}")
                return
            inner = pad + "  "
            separator = "{" + inner
            for key, value in obj.items():
                if type(key) is not str:
                    raise TypeError("only string keys")  # never in our documents
                append(separator)
                append(_escape(key))
                of = type(value)
                if of is str:  # most values: no call
                    append(": " + _escape(value))
                elif value is None or of is bool or of is int:
                    append(": " + ("null" if value is None else json.dumps(value)))
                elif (of is list or of is dict) and value and _flat(value):
                    append(": " + _flat_text(value, inner))  # a list or dict of strings
                else:
                    append(": ")
                    emit(value, inner)
                separator = "," + inner
            append(pad + "}")
        elif kind is list or kind is tuple or isinstance(obj, Iterator):
            inner = pad + "  "
            separator = "[" + inner
            for value in obj:
                append(separator)
                if type(value) is str:
                    append(_escape(value))
                elif type(value) is dict and value and _flat(value):
                    append(_flat_text(value, inner))  # e.g. a file's path, digest and mode
                else:
                    emit(value, inner)
                separator = "," + inner
                if len(pieces) >= _FLUSH_AT:
                    write("".join(pieces))
                    pieces.clear()
            append("[]" if separator == "[" + inner else pad + "]")
        elif isinstance(obj, str):  # subclasses (a StrEnum): as json.dumps writes them
            append(_escape(obj))
        elif isinstance(obj, dict):
            emit(dict(obj), pad)
        elif isinstance(obj, list | tuple):
            emit(list(obj), pad)
        else:  # numbers, booleans, None: the standard library's own forms
            append(json.dumps(obj))

    emit(document, "\n")
    write("".join(pieces))


def dumps_indented(document: Any) -> str:
    """``json.dumps(document, indent=2)``, faster."""
    parts: list[str] = []
    write_indented(document, parts.append)
    return "".join(parts)


__all__ = ["dumps_indented", "write_indented"]
