"""JSON, fast and in pieces: indented documents and compact lines, by orjson (native code).

The standard library's indenting encoder is pure Python and builds one string; a batch writes
and reads about 10 KB of JSON per user (its journal, the outcomes it spools, the manifest and
``--json``). :func:`write_indented` writes the same text as ``json.dumps(document, indent=2,
ensure_ascii=False)`` (UTF-8: a name like ``Zoë`` is written as it is), handed to ``write`` in
pieces of about 64 KiB; an iterator in the document is written as the list it yields, one item
at a time, so a long list need never be held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

_FLUSH_AT = 1 << 16  # characters
_INDENT = orjson.OPT_INDENT_2

loads = orjson.loads  # str or bytes; raises orjson.JSONDecodeError (a ValueError)


def dumps_line(value: Any) -> bytes:
    """``value`` as one line of compact JSON (``separators=(",", ":")``), newline included."""
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)


def dumps_compact(value: Any) -> bytes:
    """``value`` as compact JSON (``separators=(",", ":")``)."""
    return orjson.dumps(value)


def _text(value: Any, pad: str) -> str:
    """``value`` (no iterator in it) as json.dumps(indent=2) writes it at indentation ``pad``
    (a newline and the spaces of its depth). A newline in the text is always layout: one in
    a string is escaped."""
    text = orjson.dumps(value, option=_INDENT).decode()
    return text if pad == "\n" else text.replace("\n", pad)


_PLAIN = frozenset({str, int, bool, list, tuple, type(None)})  # never an iterator: no ABC check


def _streams(value: Any) -> bool:
    """True when ``value`` is, or directly holds, an iterator (written item by item)."""
    kind = type(value)
    if kind is dict:
        return any(type(v) not in _PLAIN and _streams(v) for v in value.values())
    return kind not in _PLAIN and isinstance(value, Iterator)


def write_indented(document: Any, write: Callable[[str], object]) -> None:
    """Write ``json.dumps(document, indent=2, ensure_ascii=False)`` through ``write``, in
    pieces. An iterator (a generator) in the document, or as a value of a dict in it, is
    written as the list it yields, one item at a time (each item written whole)."""
    pieces: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        pieces.append(text)
        size += len(text)
        if size >= _FLUSH_AT:
            write("".join(pieces))
            pieces.clear()
            size = 0

    def emit(obj: Any, pad: str) -> None:
        if not _streams(obj):
            put(_text(obj, pad))
            return
        inner = pad + "  "
        if isinstance(obj, Iterator):
            separator = "[" + inner
            for item in obj:  # items are written whole (a manifest's user, an outcome)
                put(separator + _text(item, inner))
                separator = "," + inner
            put("[]" if separator == "[" + inner else pad + "]")
            return
        separator = "{" + inner
        for key, value in obj.items():
            if type(key) is not str:
                raise TypeError("only string keys")  # never in our documents
            put(separator + _text(key, inner) + ": ")
            emit(value, inner)
            separator = "," + inner
        put("{}" if separator == "{" + inner else pad + "}")

    emit(document, "\n")
    write("".join(pieces))


def dumps_indented(document: Any) -> str:
    """``json.dumps(document, indent=2, ensure_ascii=False)``, faster."""
    parts: list[str] = []
    write_indented(document, parts.append)
    return "".join(parts)


__all__ = ["dumps_compact", "dumps_indented", "dumps_line", "loads", "write_indented"]
