"""Placeholders as they occur (issue 8, item 2): classic and chain forms, bare or inside PEM
armour, empty blocks; any other template variable refused with its name and line."""

from __future__ import annotations

import pytest
from cryptography import x509

from toolkit.ca import keys as pki
from toolkit.errors import ProfileError
from toolkit.fill import CredentialPem, fill_credentials, foreign_placeholders, placeholder_dialect
from toolkit.profile import Profile
from toolkit.sample import SampleGateway

CERT_FORMS = {
    "classic": ("$CLIENTCERTIFICATE", "classic"),
    "classic-armoured": (
        "-----BEGIN CERTIFICATE-----\n$CLIENTCERTIFICATE\n-----END CERTIFICATE-----",
        "classic",
    ),
    "chain": ("$CLIENT_CERTIFICATE\n$INTERMEDIATE_CERTIFICATE\n$ROOT_CERTIFICATE", "chain"),
    "chain-documented": (
        "$CLIENT_CERTIFICATE\n$INTERMEDIATE_CERTIFICATE (optional)\n$ROOT_CERTIFICATE",
        "chain",
    ),
    "empty": ("", "empty"),
    "empty-armour": ("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "empty"),
}
KEY_FORMS = {
    "classic": "$PRIVATEKEY",
    "armoured": "-----BEGIN PRIVATE KEY-----\n$PRIVATEKEY\n-----END PRIVATE KEY-----",
    "armoured-rsa": "-----BEGIN RSA PRIVATE KEY-----\n$PRIVATEKEY\n-----END RSA PRIVATE KEY-----",
    "empty": "",
}


def _template(gateway: SampleGateway, cert_body: str, key_body: str) -> Profile:
    text = gateway.profile_text()
    text = text.replace("<cert>\n$CLIENTCERTIFICATE\n</cert>", f"<cert>\n{cert_body}\n</cert>")
    text = text.replace("<key>\n$PRIVATEKEY\n</key>", f"<key>\n{key_body}\n</key>")
    return Profile.parse(text, "vpnconfig.ovpn")


@pytest.mark.parametrize("key_form", sorted(KEY_FORMS))
@pytest.mark.parametrize("cert_form", sorted(CERT_FORMS))
def test_every_form_is_filled_and_the_armour_replaced(
    cert_form: str,
    key_form: str,
    gateway: SampleGateway,
    client: pki.IssuedCertificate,
    p2s_root: pki.IssuedCertificate,
) -> None:
    body, dialect = CERT_FORMS[cert_form]
    profile = _template(gateway, body, KEY_FORMS[key_form])
    assert placeholder_dialect(profile) == dialect
    fill_credentials(
        profile, CredentialPem(client.cert_pem, client.key_pem(), (), p2s_root.certificate)
    )
    filled = Profile.parse(profile.serialize())
    cert_text = filled.block("cert").content  # type: ignore[union-attr]
    key_text = filled.block("key").content  # type: ignore[union-attr]
    certs = x509.load_pem_x509_certificates(cert_text.encode())
    assert certs[0] == client.certificate
    # the chain form adds the root; no armour of the template is left around the PEM
    assert len(certs) == (2 if dialect == "chain" else 1)
    assert cert_text.count("-----BEGIN") == len(certs)
    assert "$" not in cert_text + key_text
    assert key_text == client.key_pem().decode()  # the key's PEM, whole, nothing around it
    assert key_text.count("-----BEGIN") == 1


def test_filled_credentials_are_still_recognised(
    gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    profile = _template(
        gateway, client.cert_pem.decode().strip(), client.key_pem().decode().strip()
    )
    assert placeholder_dialect(profile) == "filled"
    with pytest.raises(ProfileError, match="already hold credentials"):
        fill_credentials(profile, CredentialPem(client.cert_pem, client.key_pem()))


@pytest.mark.parametrize(
    ("edit", "token"),
    [
        (("verb 3", "verb ${verbosity}"), "${verbosity}"),
        (("verb 3", "verb __VERB__"), "__VERB__"),
        (("nobind", "nobind\nsetenv USER $user"), "$user"),
        (
            ("<cert>\n$CLIENTCERTIFICATE", "<cert>\n{{ cert }}\n$CLIENTCERTIFICATE\n$EXTRA"),
            "$EXTRA",
        ),
        (("<key>\n$PRIVATEKEY", "<key>\n__KEY__"), "__KEY__"),
        (("verb 3", "verb 3 $CLIENTCERTIFICATE"), "$CLIENTCERTIFICATE"),
    ],
)
def test_foreign_template_variables_are_refused_with_name_and_line(
    edit: tuple[str, str], token: str, gateway: SampleGateway, client: pki.IssuedCertificate
) -> None:
    text = gateway.profile_text()
    assert edit[0] in text
    text = text.replace(edit[0], edit[1], 1)
    profile = Profile.parse(text, "vpnconfig.ovpn")
    line = next(
        n for n, raw in enumerate(text.split("\n"), 1) if token in raw and not raw.startswith("#")
    )
    assert (line, token) in foreign_placeholders(profile)
    with pytest.raises(ProfileError) as caught:
        fill_credentials(profile, CredentialPem(client.cert_pem, client.key_pem()))
    assert (
        f"line {line}: template variable {token} is not an Azure placeholder"
        in caught.value.message
    )
    assert caught.value.hint is not None and "another tool's template" in caught.value.hint


def test_comments_may_mention_placeholders(gateway: SampleGateway) -> None:
    text = gateway.profile_text().replace("verb 3", "# set ${verbosity} or $LEVEL here\nverb 3")
    assert foreign_placeholders(Profile.parse(text)) == []
