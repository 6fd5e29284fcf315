"""toolkit.profile: the lossless profile model, the OpenVPN tokenizer and argument quoting."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.errors import ProfileError
from toolkit.profile import (
    Blank,
    Block,
    Comment,
    Directive,
    Profile,
    normalize_text,
    quote_arg,
    render_directive,
    tokenize,
)

SAMPLE = """\
# a comment
; another comment

client
remote gw.example.net 443   # inline comment
verify-x509-name 'guid.vpn.azure.com' name
<ca>
-----BEGIN CERTIFICATE-----
AAAA
-----END CERTIFICATE-----
</ca>
  verb 3
<key>
$PRIVATEKEY
</key>
"""


# --- parsing ---------------------------------------------------------------------------------
def test_parse_items_kinds_and_line_numbers() -> None:
    profile = Profile.parse(SAMPLE, "vpnconfig.ovpn")

    kinds = [(type(item).__name__, item.line) for item in profile.items]
    assert kinds == [
        ("Comment", 1),
        ("Comment", 2),
        ("Blank", 3),
        ("Directive", 4),
        ("Directive", 5),
        ("Directive", 6),
        ("Block", 7),
        ("Directive", 12),
        ("Block", 13),
    ]
    remote = profile.first("remote")
    assert remote is not None
    assert remote.args == ["gw.example.net", "443"]  # the inline comment is not an argument
    verify = profile.first("verify-x509-name")
    assert verify is not None
    assert verify.args == ["guid.vpn.azure.com", "name"]
    assert verify.raw == "verify-x509-name 'guid.vpn.azure.com' name"
    verb = profile.first("verb")
    assert verb is not None
    assert (verb.line, verb.args) == (12, ["3"])
    ca = profile.block("ca")
    assert ca is not None
    assert ca.body == ["-----BEGIN CERTIFICATE-----", "AAAA", "-----END CERTIFICATE-----"]
    assert ca.content == "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert [b.name for b in profile.blocks()] == ["ca", "key"]
    assert profile.block("cert") is None
    assert profile.first("log") is None
    assert [c.line for c in profile.comments()] == [1, 2]
    assert profile.source == "vpnconfig.ovpn"


def test_lines_inside_blocks_are_not_directives() -> None:
    profile = Profile.parse("<ca>\nlog openvpn.log\n# not a comment item\n</ca>\nverb 3\n")
    assert [d.name for d in profile.directives()] == ["verb"]
    assert list(profile.comments()) == []
    block = profile.block("ca")
    assert block is not None
    assert block.body == ["log openvpn.log", "# not a comment item"]


def test_block_close_must_match_its_name() -> None:
    profile = Profile.parse("<cert>\n</key>\nx\n</cert>\n")
    block = profile.block("cert")
    assert block is not None
    assert block.body == ["</key>", "x"]
    assert len(profile.items) == 1


def test_serialize_is_byte_identical_and_keeps_missing_trailing_newline() -> None:
    assert Profile.parse(SAMPLE).serialize() == SAMPLE
    no_newline = SAMPLE.rstrip("\n")
    parsed = Profile.parse(no_newline)
    assert parsed.trailing_newline is False
    assert parsed.serialize() == no_newline


def test_crlf_and_bom_are_normalised() -> None:
    data = ("\ufeff" + SAMPLE.replace("\n", "\r\n")).encode("utf-8")
    profile = Profile.parse(data)
    assert profile.serialize() == SAMPLE
    assert profile.to_bytes() == SAMPLE.encode("utf-8")
    assert not profile.to_bytes().startswith(b"\xef\xbb\xbf")
    assert normalize_text(b"a\rb\r\nc\n") == "a\nb\nc\n"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(b"client\n\xff\xfe remote\n", "not UTF-8", id="latin1"),
        pytest.param(b"client\x00\n", "NUL", id="nul"),
    ],
)
def test_not_text_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(ProfileError, match=fragment) as info:
        Profile.parse(data, "bad.ovpn")
    assert info.value.message.startswith("bad.ovpn")
    assert info.value.hint


def test_edits_keep_other_items() -> None:
    profile = Profile.parse(SAMPLE)
    verb = profile.first("verb")
    client = profile.first("client")
    assert verb is not None and client is not None
    profile.remove(verb)
    profile.insert_after(client, Directive.new("setenv", "FRIENDLY_NAME", "Alice (Contoso)"))
    out = profile.serialize()
    assert "verb 3" not in out
    assert 'client\nsetenv FRIENDLY_NAME "Alice (Contoso)"\nremote' in out
    assert Profile.parse(SAMPLE).clone().serialize() == SAMPLE
    with pytest.raises(ValueError, match="not part"):
        profile.replace(verb, Blank(0, ""))


def test_new_block_content() -> None:
    block = Block.new("cert", "-----BEGIN X-----\nabc\n-----END X-----\n")
    assert block.raw_lines == ["<cert>", "-----BEGIN X-----", "abc", "-----END X-----", "</cert>"]
    assert Block.new("cert", "  \n").body == []


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("client\n<ca>\nAAAA\n", ["line 2", "<ca> is never closed"], id="no-close"),
        pytest.param(
            "client\n<cert>\nAAAA\n</key>\n", ["line 2", "<cert> is never closed"], id="wrong-close"
        ),
        pytest.param(
            "client\nverify-x509-name 'abc name\n", ["line 2", "unterminated quote"], id="single"
        ),
        pytest.param('client\n\nsetenv X "abc\n', ["line 3", "unterminated quote"], id="double"),
        pytest.param(
            'setenv X "escaped quote \\"\n', ["line 1", "unterminated quote"], id="escaped"
        ),
    ],
)
def test_unterminated_block_or_quote(text: str, fragments: list[str]) -> None:
    with pytest.raises(ProfileError) as info:
        Profile.parse(text, "vpnconfig.ovpn")
    message = info.value.message
    assert message.startswith("vpnconfig.ovpn line")
    for fragment in fragments:
        assert fragment in message
    assert info.value.hint


# --- tokenize --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        pytest.param("remote gw.example.net 443", ["remote", "gw.example.net", "443"], id="plain"),
        pytest.param("  \tverb   3\t ", ["verb", "3"], id="whitespace"),
        pytest.param(
            "verify-x509-name 'guid.vpn.azure.com' name",
            ["verify-x509-name", "guid.vpn.azure.com", "name"],
            id="single-quotes",
        ),
        pytest.param(
            'setenv FRIENDLY_NAME "Alice (Contoso VPN)"',
            ["setenv", "FRIENDLY_NAME", "Alice (Contoso VPN)"],
            id="double-quotes",
        ),
        pytest.param('x "say \\"hi\\""', ["x", 'say "hi"'], id="escaped-double-quote"),
        pytest.param('x "C:\\\\Program Files"', ["x", "C:\\Program Files"], id="escaped-backslash"),
        pytest.param("x 'no \\escape \"here'", ["x", 'no \\escape "here'], id="single-literal"),
        pytest.param("x two\\ words", ["x", "two words"], id="backslash-space"),
        pytest.param("verb 3 # set verbosity", ["verb", "3"], id="inline-hash"),
        pytest.param("verb 3 ; set verbosity", ["verb", "3"], id="inline-semicolon"),
        pytest.param("x a#b c;d", ["x", "a#b", "c;d"], id="hash-inside-token"),
        pytest.param('x "#not a comment"', ["x", "#not a comment"], id="hash-quoted"),
        pytest.param('x ""', ["x", ""], id="empty-quoted"),
        pytest.param("# only a comment", [], id="comment"),
        pytest.param("", [], id="empty"),
    ],
)
def test_tokenize(line: str, tokens: list[str]) -> None:
    assert tokenize(line) == tokens


@pytest.mark.parametrize("line", ["x 'abc", 'x "abc', 'x "abc\\"'])
def test_tokenize_unterminated_quote(line: str) -> None:
    with pytest.raises(ValueError, match="unterminated"):
        tokenize(line)


@pytest.mark.parametrize(
    ("arg", "rendered"),
    [
        ("guid.vpn.azure.com", "guid.vpn.azure.com"),
        ("Alice (Contoso)", '"Alice (Contoso)"'),
        ("", '""'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("#x", '"#x"'),
        ("abc\n", '"abc\n"'),
    ],
)
def test_quote_arg(arg: str, rendered: str) -> None:
    assert quote_arg(arg) == rendered


# --- properties ------------------------------------------------------------------------------
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00\ufeff")
LINE_TEXT = st.text(TEXT_CHARS, max_size=40)
SAFE_TOKEN = st.from_regex(r"\A[A-Za-z0-9_.,:/@%+=-]{1,12}\Z")
NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z")
SPACE = st.sampled_from([" ", "  ", "\t", " \t "])


ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
# arbitrary text, and safe-looking tokens with arbitrary text around them (near the boundary)
EDGES = st.one_of(st.sampled_from(["", "\n", " ", "\t", "#", ";", "\\", '"', "'"]), ANY_TEXT)
ARGS = st.one_of(ANY_TEXT, st.builds(lambda a, b, c: a + b + c, EDGES, SAFE_TOKEN, EDGES))


@given(ARGS)
def test_quote_arg_round_trips_through_tokenize(arg: str) -> None:
    assert tokenize(quote_arg(arg)) == [arg]


@given(NAME, st.lists(ARGS, max_size=5))
def test_render_directive_round_trips(name: str, args: list[str]) -> None:
    assert tokenize(render_directive(name, args)) == [name, *args]


@dataclass(frozen=True)
class Expected:
    """What one generated chunk of text must parse into."""

    kind: type
    lines: list[str]
    tokens: tuple[str, ...] = ()
    block: str = ""


@st.composite
def blank_chunk(draw: st.DrawFn) -> Expected:
    return Expected(Blank, [draw(st.sampled_from(["", " ", "\t", "  \t"]))])


@st.composite
def comment_chunk(draw: st.DrawFn) -> Expected:
    lead = draw(st.sampled_from(["", " ", "\t"]))
    return Expected(Comment, [lead + draw(st.sampled_from("#;")) + draw(LINE_TEXT)])


@st.composite
def arg_form(draw: st.DrawFn) -> tuple[str, str]:
    """(how the argument is written, what it means)."""
    kind = draw(st.sampled_from(["safe", "double", "single"]))
    if kind == "safe":
        token = draw(SAFE_TOKEN)
        return token, token
    if kind == "double":
        value = draw(LINE_TEXT)
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"', value
    value = draw(st.text(TEXT_CHARS.filter(lambda c: c != "'"), max_size=20))
    return f"'{value}'", value


@st.composite
def directive_chunk(draw: st.DrawFn) -> Expected:
    name = draw(NAME)
    args = draw(st.lists(arg_form(), max_size=4))
    line = draw(st.sampled_from(["", " ", "\t"])) + name
    for written, _meaning in args:
        line += draw(SPACE) + written
    line += draw(st.sampled_from(["", " ", "\t "]))
    if draw(st.booleans()):
        line += draw(SPACE) + draw(st.sampled_from("#;")) + draw(LINE_TEXT)
    return Expected(Directive, [line], (name, *(meaning for _w, meaning in args)))


@st.composite
def block_chunk(draw: st.DrawFn) -> Expected:
    name = draw(st.sampled_from(["ca", "cert", "key", "tls-auth", "x509"]))
    close = re.compile(rf"^\s*</{re.escape(name)}>\s*$")
    body = draw(st.lists(LINE_TEXT.filter(lambda s: not close.match(s)), max_size=5))
    open_line = draw(st.sampled_from(["", " "])) + f"<{name}>" + draw(st.sampled_from(["", " "]))
    close_line = f"</{name}>" + draw(st.sampled_from(["", "\t"]))
    return Expected(Block, [open_line, *body, close_line], block=name)


CHUNKS = st.lists(
    st.one_of(blank_chunk(), comment_chunk(), directive_chunk(), block_chunk()), max_size=25
)


@given(
    CHUNKS,
    st.lists(st.booleans(), min_size=1, max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_round_trip_profile_like_text(
    chunks: list[Expected], crlf: list[bool], bom: bool, trailing: bool
) -> None:
    lines = [line for chunk in chunks for line in chunk.lines]
    # "a\n" + "" without a final newline reads as "a\n": the empty last line needs one
    trailing = trailing or (bool(lines) and lines[-1] == "")
    normalised = "\n".join(lines) + ("\n" if trailing and lines else "")
    # the same text as Windows may write it: CRLF on some lines, a BOM
    raw = ""
    for index, line in enumerate(lines):
        raw += line
        if index < len(lines) - 1 or (trailing and lines):
            raw += "\r\n" if crlf[index % len(crlf)] else "\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + raw.encode("utf-8")

    profile = Profile.parse(data)
    assert profile.serialize() == normalised
    # idempotence: parsing the output gives the same items and the same text again
    again = Profile.parse(profile.serialize())
    assert again.items == profile.items
    assert again.serialize() == normalised

    if not chunks:  # an empty file is a single blank line
        assert [type(i) for i in profile.items] == [Blank]
        return
    # the model: every chunk is one item of the expected kind, at the expected line
    assert len(profile.items) == len(chunks)
    line = 1
    for item, chunk in zip(profile.items, chunks, strict=True):
        assert isinstance(item, chunk.kind)
        assert item.line == line
        if isinstance(item, Directive):
            assert (item.name, *item.args) == chunk.tokens
        if isinstance(item, Block):
            assert item.name == chunk.block
            assert item.body == chunk.lines[1:-1]
        line += len(chunk.lines)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_arbitrary_text_round_trips_or_is_refused(text: str) -> None:
    expected = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    try:
        profile = Profile.parse(text.encode("utf-8"))
    except ProfileError as exc:
        assert "never closed" in exc.message or "unterminated quote" in exc.message
        return
    assert profile.serialize() == expected
    assert Profile.parse(profile.serialize()).serialize() == expected
