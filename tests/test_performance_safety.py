"""What the performance work skipped or shortcut stays safe (docs/performance.md)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from toolkit.credentials import load_private_key
from toolkit.errors import CredentialsError
from toolkit.jsontext import dumps_indented, dumps_line, loads
from toolkit.profile import Block, Directive, Profile


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def damaged_key_pem() -> bytes:
    """An RSA key whose public half is fine but whose CRT coefficient is wrong."""
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    bad = rsa.RSAPrivateNumbers(
        good.p,
        good.q,
        good.d,
        good.dmp1,
        good.dmq1,
        (good.iqmp + 1) % good.p,
        good.public_numbers,
    )
    return _pem(bad.private_key(unsafe_skip_rsa_key_validation=True))


def test_a_damaged_rsa_key_is_refused_with_and_without_openssl_validation(
    damaged_key_pem: bytes,
) -> None:
    # the default (the CA's own key): OpenSSL's full check
    with pytest.raises(CredentialsError, match="cannot be parsed"):
        load_private_key(damaged_key_pem, "root.key", None)
    # client keys: OpenSSL's primality tests skipped, the arithmetic still checked here
    with pytest.raises(CredentialsError, match="damaged"):
        load_private_key(damaged_key_pem, "alice.key", None, skip_rsa_validation=True)


def test_a_sound_key_loads_the_same_either_way() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    checked = load_private_key(_pem(key), "k", None)
    fast = load_private_key(_pem(key), "k", None, skip_rsa_validation=True)
    assert isinstance(checked, rsa.RSAPrivateKey) and isinstance(fast, rsa.RSAPrivateKey)
    assert checked.private_numbers() == fast.private_numbers() == key.private_numbers()


def test_profile_clone_is_independent_and_identical() -> None:
    text = "client\nremote gw.example 443\n# note\n\n<ca>\nAAA\n</ca>\nverb 3\n"
    template = Profile.parse(text, "t.ovpn")
    copy = template.clone()
    assert copy.serialize() == template.serialize() == text
    directive = copy.first("remote")
    block = copy.block("ca")
    assert isinstance(directive, Directive) and isinstance(block, Block)
    directive.args.append("tcp")
    block.body.append("BBB")
    copy.remove(copy.items[0])
    assert template.serialize() == text
    assert Profile.parse(text, "t.ovpn") == template


# what our documents hold: no floats (orjson writes some, like 1e16, in another equal form),
# integers within 64 bits (stat keys), text without lone surrogates (not UTF-8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fast_indented_json_is_the_standard_text(document: object) -> None:
    assert dumps_indented(document) == json.dumps(document, indent=2, ensure_ascii=False)
    streamed = {"users": iter([document, document]), "n": 1}
    expected = {"users": [document, document], "n": 1}
    assert dumps_indented(streamed) == json.dumps(expected, indent=2, ensure_ascii=False)


def test_json_lines_are_the_standard_compact_text_in_utf8() -> None:
    event = {"v": 1, "name": "zoë", "files": [{"path": "a\nb", "sha256": "00"}], "n": 2**63}
    line = dumps_line(event)
    assert line == (json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    assert loads(line) == event and loads(line.decode()) == event
