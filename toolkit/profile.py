"""A lossless model of an OpenVPN configuration file.

The profile is a sequence of items - blank lines, comments, directives and inline blocks
(``<ca> ... </ca>``) - each keeping its raw text and the line it started on. Unchanged
input re-serializes byte-identically (after line-ending normalisation: LF, no BOM).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from toolkit.errors import ProfileError

BOM = "\ufeff"
_BLOCK_OPEN = re.compile(r"^\s*<([A-Za-z][A-Za-z0-9_-]*)>\s*$")
_BLOCK_CLOSE = re.compile(r"^\s*</([A-Za-z][A-Za-z0-9_-]*)>\s*$")
_SAFE_ARG = re.compile(r"^[A-Za-z0-9_.,:/@%+=-]+$")


def normalize_text(data: bytes | str, source: str = "profile") -> str:
    """Decode UTF-8 (with or without BOM) and turn CRLF/CR into LF."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProfileError(
                f"{source}: not UTF-8 text (byte {exc.start})",
                hint="save the profile as UTF-8; OpenVPN profiles are plain text",
            ) from exc
    else:
        text = data
    text = text.removeprefix(BOM)
    if "\x00" in text:
        raise ProfileError(f"{source}: contains NUL bytes", hint="this is not a text profile")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def tokenize(line: str) -> list[str]:
    """Split a directive line as OpenVPN 2 does: whitespace, "double" (with \\ escapes) and
    'single' quotes; ``#`` or ``;`` at the start of a token begins a comment."""
    tokens: list[str] = []
    current: list[str] = []
    in_token = False
    quote: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if quote == '"' and c == "\\" and i + 1 < len(line):
                current.append(line[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            else:
                current.append(c)
        elif c.isspace():
            if in_token:
                tokens.append("".join(current))
                current, in_token = [], False
        elif not in_token and c in "#;":
            break
        elif c in "\"'":
            quote, in_token = c, True
        elif c == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            in_token = True
            i += 2
            continue
        else:
            current.append(c)
            in_token = True
        i += 1
    if quote:
        raise ValueError("unterminated quote")
    if in_token:
        tokens.append("".join(current))
    return tokens


def quote_arg(arg: str) -> str:
    """Render one argument so :func:`tokenize` gives it back; bare when that is safe."""
    if arg and _SAFE_ARG.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_directive(name: str, args: Sequence[str]) -> str:
    return " ".join([name, *(quote_arg(a) for a in args)])


@dataclass
class Item:
    """One element of a profile; ``line`` is where it started in the input (0 when added)."""

    line: int

    @property
    def raw_lines(self) -> list[str]:
        raise NotImplementedError


@dataclass
class Blank(Item):
    raw: str = ""

    @property
    def raw_lines(self) -> list[str]:
        return [self.raw]


@dataclass
class Comment(Item):
    raw: str = "#"

    @property
    def raw_lines(self) -> list[str]:
        return [self.raw]


@dataclass
class Directive(Item):
    name: str = ""
    args: list[str] = field(default_factory=list)
    raw: str = ""

    @classmethod
    def new(cls, name: str, *args: str) -> Directive:
        return cls(line=0, name=name, args=list(args), raw=render_directive(name, args))

    @property
    def raw_lines(self) -> list[str]:
        return [self.raw]


@dataclass
class Block(Item):
    """An inline file: ``<name>`` body ``</name>``."""

    name: str = ""
    body: list[str] = field(default_factory=list)
    open_raw: str = ""
    close_raw: str = ""

    @classmethod
    def new(cls, name: str, content: str) -> Block:
        body = content.rstrip("\n").split("\n") if content.strip() else []
        return cls(line=0, name=name, body=body, open_raw=f"<{name}>", close_raw=f"</{name}>")

    @property
    def content(self) -> str:
        return "\n".join(self.body) + ("\n" if self.body else "")

    @property
    def raw_lines(self) -> list[str]:
        return [self.open_raw, *self.body, self.close_raw]


def _copy_item(item: Item) -> Item:
    """A copy of an item of a subclass (:meth:`Profile.clone` copies the four kinds itself)."""
    if isinstance(item, Directive):
        return Directive(item.line, item.name, list(item.args), item.raw)
    if isinstance(item, Block):
        return Block(item.line, item.name, list(item.body), item.open_raw, item.close_raw)
    if isinstance(item, Blank):
        return Blank(item.line, item.raw)
    if isinstance(item, Comment):
        return Comment(item.line, item.raw)
    return copy.copy(item)


@dataclass
class Profile:
    items: list[Item]
    trailing_newline: bool = True
    source: str = "profile"

    @classmethod
    def parse(cls, data: bytes | str, source: str = "profile") -> Profile:
        text = normalize_text(data, source)
        trailing = text.endswith("\n")
        lines = text.split("\n")
        if trailing:
            lines.pop()
        items: list[Item] = []
        i = 0
        while i < len(lines):
            raw = lines[i]
            lineno = i + 1
            stripped = raw.strip()
            opened = _BLOCK_OPEN.match(raw)
            if opened:
                name = opened.group(1)
                body: list[str] = []
                j = i + 1
                while j < len(lines):
                    closed = _BLOCK_CLOSE.match(lines[j])
                    if closed and closed.group(1) == name:
                        break
                    body.append(lines[j])
                    j += 1
                else:
                    raise ProfileError(
                        f"{source} line {lineno}: <{name}> is never closed",
                        hint=f"add a </{name}> line after the block's content",
                    )
                items.append(Block(lineno, name, body, raw, lines[j]))
                i = j + 1
                continue
            if not stripped:
                items.append(Blank(lineno, raw))
            elif stripped[0] in "#;":
                items.append(Comment(lineno, raw))
            else:
                try:
                    tokens = tokenize(raw)
                except ValueError as exc:
                    raise ProfileError(
                        f"{source} line {lineno}: unterminated quote",
                        hint="close the quote or remove it",
                    ) from exc
                if not tokens:  # e.g. a line that is only a stray close tag
                    items.append(Comment(lineno, raw))
                else:
                    items.append(Directive(lineno, tokens[0], tokens[1:], raw))
            i += 1
        return cls(items, trailing, source)

    def serialize(self) -> str:
        lines: list[str] = []
        append, extend = lines.append, lines.extend
        for item in self.items:  # the raw lines, without building a list per item
            kind = type(item)
            if kind is Block:
                append(item.open_raw)  # type: ignore[attr-defined]
                extend(item.body)  # type: ignore[attr-defined]
                append(item.close_raw)  # type: ignore[attr-defined]
            elif kind is Directive or kind is Comment or kind is Blank:
                append(item.raw)  # type: ignore[attr-defined]
            else:
                extend(item.raw_lines)
        text = "\n".join(lines)
        return text + "\n" if self.trailing_newline and lines else text

    def to_bytes(self) -> bytes:
        return self.serialize().encode("utf-8")

    def share(self) -> Profile:
        """A copy that shares its items with this profile: adding, removing and replacing items
        (:meth:`remove`, :meth:`replace`, :meth:`insert_before`, :meth:`insert_after`) leaves
        this one as it is; changing an item in place would not. Planning gives each user such
        a copy of the package's prepared profile (targets' ``adapt_user`` only add items, the
        fill replaces its two blocks)."""
        return Profile(list(self.items), self.trailing_newline, self.source)

    def clone(self) -> Profile:
        """An independent copy without re-parsing: every item copied, with its own lists."""
        items: list[Item] = []
        append = items.append
        for item in self.items:
            # exact types (no typing.cast in this loop: it is a call); subclasses below
            kind = type(item)
            if kind is Directive:
                d: Directive = item  # type: ignore[assignment]
                append(Directive(d.line, d.name, d.args[:], d.raw))
            elif kind is Block:
                b: Block = item  # type: ignore[assignment]
                append(Block(b.line, b.name, b.body[:], b.open_raw, b.close_raw))
            elif kind is Comment:
                append(Comment(item.line, item.raw))  # type: ignore[attr-defined]
            elif kind is Blank:
                append(Blank(item.line, item.raw))  # type: ignore[attr-defined]
            else:
                append(_copy_item(item))
        return Profile(items, self.trailing_newline, self.source)

    # --- queries -------------------------------------------------------------------------
    def directives(self, name: str | None = None) -> Iterator[Directive]:
        for item in self.items:
            if isinstance(item, Directive) and (name is None or item.name == name):
                yield item

    def first(self, name: str) -> Directive | None:
        return next(self.directives(name), None)

    def blocks(self, name: str | None = None) -> Iterator[Block]:
        for item in self.items:
            if isinstance(item, Block) and (name is None or item.name == name):
                yield item

    def block(self, name: str) -> Block | None:
        return next(self.blocks(name), None)

    def comments(self) -> Iterator[Comment]:
        for item in self.items:
            if isinstance(item, Comment):
                yield item

    # --- edits ---------------------------------------------------------------------------
    def remove(self, item: Item) -> None:
        self.items = [i for i in self.items if i is not item]

    def replace(self, item: Item, *new: Item) -> None:
        index = self._index(item)
        self.items[index : index + 1] = list(new)

    def insert_before(self, anchor: Item, *new: Item) -> None:
        index = self._index(anchor)
        self.items[index:index] = list(new)

    def insert_after(self, anchor: Item, *new: Item) -> None:
        index = self._index(anchor) + 1
        self.items[index:index] = list(new)

    def _index(self, item: Item) -> int:
        for index, candidate in enumerate(self.items):
            if candidate is item:
                return index
        raise ValueError("item is not part of this profile")
