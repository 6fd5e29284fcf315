"""toolkit.inject: filling <cert>/<key> in every placeholder dialect, checked by parsing back."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from toolkit.ca import keys as pki
from toolkit.errors import ProfileError
from toolkit.fill import CredentialPem, fill_credentials, find_placeholders, placeholder_dialect
from toolkit.profile import Block, Profile
from toolkit.sample import SampleGateway

SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def intermediate(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    return pki.issue_certificate(p2s_root, "Intermediate", is_ca=True, eku=())


@pytest.fixture(scope="module")
def chained_client(intermediate: pki.IssuedCertificate) -> pki.IssuedCertificate:
    """A client certificate issued by the intermediate, not by the root."""
    return pki.issue_certificate(intermediate, "bob@contoso.com")


def creds_of(
    issued: pki.IssuedCertificate,
    chain: tuple[pki.IssuedCertificate, ...] = (),
    root: pki.IssuedCertificate | None = None,
) -> CredentialPem:
    return CredentialPem(
        issued.cert_pem,
        issued.key_pem(),
        tuple(c.certificate for c in chain),
        root.certificate if root else None,
    )


def template(gateway: SampleGateway, **changes: object) -> Profile:
    changed = dataclasses.replace(gateway, **changes)  # type: ignore[arg-type]
    return Profile.parse(changed.profile_text(), "vpnconfig.ovpn")


def block(profile: Profile, name: str) -> Block:
    found = profile.block(name)
    assert found is not None
    return found


def certs_in(profile: Profile) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(block(profile, "cert").content.encode())


def fingerprints(certs: list[x509.Certificate]) -> list[str]:
    return [pki.fingerprint_sha256(c) for c in certs]


def assert_key_matches(profile: Profile, cert: x509.Certificate) -> None:
    key_pem = block(profile, "key").content.encode()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key().public_bytes(*SPKI) == cert.public_key().public_bytes(*SPKI)


def untouched_items(profile: Profile) -> list[list[str]]:
    return [
        item.raw_lines
        for item in profile.items
        if not (isinstance(item, Block) and item.name in ("cert", "key"))
    ]


# --- dialects --------------------------------------------------------------------------------
def test_classic_dialect(gateway: SampleGateway, client: pki.IssuedCertificate) -> None:
    profile = template(gateway)
    before = Profile.parse(profile.serialize())
    assert placeholder_dialect(profile) == "classic"

    edits = fill_credentials(profile, creds_of(client))

    # reparse the output, as a client would
    out = Profile.parse(profile.serialize(), "out.ovpn")
    assert fingerprints(certs_in(out)) == fingerprints([client.certificate])
    assert_key_matches(out, client.certificate)
    cert_body = block(out, "cert").body
    key_body = block(out, "key").body
    assert cert_body[0] == "-----BEGIN CERTIFICATE-----"
    assert cert_body[-1] == "-----END CERTIFICATE-----"
    assert key_body[0] == "-----BEGIN PRIVATE KEY-----"
    assert key_body[-1] == "-----END PRIVATE KEY-----"
    assert find_placeholders(out) == []
    assert "$" not in block(out, "cert").content + block(out, "key").content
    # everything but the two blocks is as Azure wrote it
    assert untouched_items(out) == untouched_items(before)
    assert placeholder_dialect(out) == "filled"
    # both fills are reported, at the blocks' lines in Azure's profile
    assert [(e.line, e.directive, e.action) for e in edits] == [
        (block(before, "cert").line, "<cert>", "filled"),
        (block(before, "key").line, "<key>", "filled"),
    ]
    assert "$CLIENTCERTIFICATE" in edits[0].reason
    assert all(e.reason for e in edits)


def test_chain_dialect_orders_client_intermediates_root(
    gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    intermediate: pki.IssuedCertificate,
    chained_client: pki.IssuedCertificate,
) -> None:
    profile = template(gateway, dialect="chain")
    assert placeholder_dialect(profile) == "chain"

    edits = fill_credentials(profile, creds_of(chained_client, (intermediate,), p2s_root))

    out = Profile.parse(profile.serialize())
    certs = certs_in(out)
    assert fingerprints(certs) == fingerprints(
        [chained_client.certificate, intermediate.certificate, p2s_root.certificate]
    )
    # each certificate is issued by the next one: a real chain, in order
    certs[0].verify_directly_issued_by(certs[1])
    certs[1].verify_directly_issued_by(certs[2])
    assert_key_matches(out, chained_client.certificate)
    assert find_placeholders(out) == []
    assert "1 intermediate(s) + root" in edits[0].reason


def test_chain_dialect_without_root_drops_the_root_placeholder(
    gateway: SampleGateway,
    intermediate: pki.IssuedCertificate,
    chained_client: pki.IssuedCertificate,
) -> None:
    profile = template(gateway, dialect="chain")
    fill_credentials(profile, creds_of(chained_client, (intermediate,)))
    out = Profile.parse(profile.serialize())
    assert fingerprints(certs_in(out)) == fingerprints(
        [chained_client.certificate, intermediate.certificate]
    )
    assert "$" not in block(out, "cert").content


def test_classic_dialect_gets_intermediates_but_never_the_root(
    gateway: SampleGateway,
    p2s_root: pki.IssuedCertificate,
    intermediate: pki.IssuedCertificate,
    chained_client: pki.IssuedCertificate,
) -> None:
    profile = template(gateway)
    fill_credentials(profile, creds_of(chained_client, (intermediate,), p2s_root))
    out = Profile.parse(profile.serialize())
    assert fingerprints(certs_in(out)) == fingerprints(
        [chained_client.certificate, intermediate.certificate]
    )


def test_empty_blocks_count_as_placeholders(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    text = gateway.profile_text().replace("$CLIENTCERTIFICATE", "").replace("$PRIVATEKEY", "  ")
    profile = Profile.parse(text)
    assert placeholder_dialect(profile) == "empty"
    edits = fill_credentials(profile, creds_of(client))
    out = Profile.parse(profile.serialize())
    assert fingerprints(certs_in(out)) == fingerprints([client.certificate])
    assert_key_matches(out, client.certificate)
    assert "empty block" in edits[0].reason


def test_old_generation_template(gateway: SampleGateway, client: pki.IssuedCertificate) -> None:
    profile = template(gateway, generation="old")
    fill_credentials(profile, creds_of(client))
    out = Profile.parse(profile.serialize())
    assert fingerprints(certs_in(out)) == fingerprints([client.certificate])
    assert_key_matches(out, client.certificate)


# --- already filled ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    return pki.issue_certificate(p2s_root, "carol@contoso.com")


def test_filled_blocks_refused_unless_replace(
    gateway: SampleGateway, client: pki.IssuedCertificate, other_client: pki.IssuedCertificate
) -> None:
    profile = template(gateway)
    fill_credentials(profile, creds_of(client))
    filled_text = profile.serialize()

    again = Profile.parse(filled_text, "alice.ovpn")
    with pytest.raises(ProfileError, match="already hold credentials") as info:
        fill_credentials(again, creds_of(other_client))
    assert "--replace-credentials" in (info.value.hint or "")
    assert again.serialize() == filled_text  # nothing was changed by the refusal

    edits = fill_credentials(again, creds_of(other_client), replace=True)
    out = Profile.parse(again.serialize())
    assert fingerprints(certs_in(out)) == fingerprints([other_client.certificate])
    assert_key_matches(out, other_client.certificate)
    assert client.cert_pem.decode() not in again.serialize()
    assert "previous credentials" in edits[0].reason


def test_only_the_key_filled_is_refused_too(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    key_pem = client.key_pem().decode().strip()
    text = gateway.profile_text().replace("$PRIVATEKEY", key_pem)
    profile = Profile.parse(text)
    assert placeholder_dialect(profile) == "classic"
    with pytest.raises(ProfileError, match="already hold credentials"):
        fill_credentials(profile, creds_of(client))


# --- errors ----------------------------------------------------------------------------------
def test_unknown_placeholder_left_is_an_error(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    text = gateway.profile_text() + "setenv GATEWAY_TOKEN $GATEWAY_SECRET\n"
    line = text.count("\n")  # the last line of Azure's file
    profile = Profile.parse(text, "vpnconfig.ovpn")
    with pytest.raises(ProfileError) as info:
        fill_credentials(profile, creds_of(client))
    assert "$GATEWAY_SECRET" in info.value.message
    assert f"vpnconfig.ovpn line {line}:" in info.value.message  # the line in Azure's file
    assert info.value.hint


def test_placeholders_in_comments_are_fine(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    text = "# replace $CLIENTCERTIFICATE below\n; and $PRIVATEKEY\n" + gateway.profile_text()
    profile = Profile.parse(text)
    fill_credentials(profile, creds_of(client))
    assert find_placeholders(profile) == []


def test_find_placeholders_names_lines(gateway: SampleGateway) -> None:
    profile = Profile.parse(gateway.profile_text())
    cert_line = block(profile, "cert").line
    key_line = block(profile, "key").line
    assert find_placeholders(profile) == [
        (cert_line + 1, "$CLIENTCERTIFICATE"),
        (key_line + 1, "$PRIVATEKEY"),
    ]
    chain = Profile.parse(dataclasses.replace(gateway, dialect="chain").profile_text())
    chain_line = block(chain, "cert").line
    assert [token for _line, token in find_placeholders(chain)] == [
        "$CLIENT_CERTIFICATE",
        "$INTERMEDIATE_CERTIFICATE",
        "$ROOT_CERTIFICATE",
        "$PRIVATEKEY",
    ]
    assert find_placeholders(chain)[0][0] == chain_line + 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("client\n<key>\n$PRIVATEKEY\n</key>\n", "no <cert> block", id="no-cert"),
        pytest.param(
            "client\n<cert>\n$CLIENTCERTIFICATE\n</cert>\n", "no <key> block", id="no-key"
        ),
        pytest.param(
            "client\n<cert>\nhello\n</cert>\n<key>\n$PRIVATEKEY\n</key>\n",
            "line 2: <cert> holds neither a placeholder nor PEM",
            id="cert-garbage",
        ),
        pytest.param(
            "client\n<cert>\n$CLIENTCERTIFICATE\n</cert>\n<key>\nhello\n</key>\n",
            "line 5: <key> holds neither a placeholder nor PEM",
            id="key-garbage",
        ),
    ],
)
def test_unusable_blocks(text: str, fragment: str, client: pki.IssuedCertificate) -> None:
    profile = Profile.parse(text, "p.ovpn")
    with pytest.raises(ProfileError) as info:
        fill_credentials(profile, creds_of(client))
    assert fragment in info.value.message
    assert info.value.hint
    assert profile.serialize() == text


def test_credential_pem_repr_hides_the_key(client: pki.IssuedCertificate) -> None:
    creds = creds_of(client)
    assert "PRIVATE" not in repr(creds)
    assert "hidden" in repr(creds)


def test_directives_and_comments_are_not_touched(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    profile = template(gateway)
    names = [(d.line, d.name, d.args) for d in profile.directives()]
    comments = [c.raw for c in profile.comments()]
    fill_credentials(profile, creds_of(client))
    assert [(d.line, d.name, d.args) for d in profile.directives()] == names
    assert [c.raw for c in profile.comments()] == comments
