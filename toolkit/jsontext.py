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


def write_indented(document: Any, write: Callable[[str], object]) -> None:
    """Write ``json.dumps(document, indent=2)`` through ``write``, in pieces. An iterator (a
    generator) in the document is written as the list it yields, one item at a time, so a
    long list need never be held whole."""
    pieces: list[str] = []

    def emit(obj: Any, pad: str) -> None:
        if isinstance(obj, str):
            pieces.append(_escape(obj))
        elif isinstance(obj, dict):
            if not obj:
                pieces.append("{}")
                return
            inner = pad + "  "
            separator = "{" + inner
            for key, value in obj.items():
                if not isinstance(key, str):
                    raise TypeError("only string keys")  # never in our documents
                pieces.append(separator)
                pieces.append(_escape(key))
                pieces.append(": ")
                emit(value, inner)
                separator = "," + inner
            pieces.append(pad + "}")
        elif isinstance(obj, list | tuple | Iterator):
            inner = pad + "  "
            separator = "[" + inner
            for value in obj:
                pieces.append(separator)
                emit(value, inner)
                separator = "," + inner
                if len(pieces) >= _FLUSH_AT:
                    write("".join(pieces))
                    pieces.clear()
            pieces.append("[]" if separator == "[" + inner else pad + "]")
        else:  # numbers, booleans, None: the standard library's own forms
            pieces.append(json.dumps(obj))

    emit(document, "\n")
    write("".join(pieces))


def dumps_indented(document: Any) -> str:
    """``json.dumps(document, indent=2)``, faster."""
    parts: list[str] = []
    write_indented(document, parts.append)
    return "".join(parts)


__all__ = ["dumps_indented", "write_indented"]
