"""The built-in IKEv2 client of macOS and iOS: an Apple configuration profile (``.mobileconfig``)
with the user's identity (``com.apple.security.pkcs12``) and an IKEv2 VPN payload
(``com.apple.vpn.managed``) for the gateway's ``VpnServer`` from ``Generic/VpnSettings.xml``.

This is the file Microsoft's how-to says Azure does not provide: its twenty manual steps
(Server Address and Remote ID = VpnServer, Local ID = the certificate's name, certificate
authentication) as one profile. Written with :mod:`plistlib`; checked in the tests against
Apple's schema (``apple/device-management``) and connected to a strongSwan responder set up
like Azure's P2S endpoint, not on a device.
"""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from toolkit.credentials import export_pkcs12
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.package import AzurePackage
from toolkit.profile import Profile
from toolkit.targets.base import (
    Target,
    TargetContext,
    bundle_identifier,
    password_file,
    pkcs12_password,
    require_credentials,
    stable_uuid,
)
from toolkit.validation import describe_cert, raise_for_errors

VPN_PAYLOAD = "com.apple.vpn.managed"
PKCS12_PAYLOAD = "com.apple.security.pkcs12"

# Inside Azure's default P2S policy (Microsoft, "About Point-to-Site VPN", "What IKE/IPsec
# policies are configured on VPN gateways for P2S?": IKE GCM_AES256 with PRF SHA256, DH 14;
# ESP GCM_AES256 without PFS). The Child SA gets its own dictionary: Apple applies the IKE
# parameters to it otherwise, and Azure's ESP list has no AES-256 + SHA2-384.
IKE_SA_PARAMETERS: dict[str, Any] = {
    "EncryptionAlgorithm": "AES-256-GCM",
    "IntegrityAlgorithm": "SHA2-256",  # with GCM: the PRF
    "DiffieHellmanGroup": 14,
    "LifeTimeInMinutes": 480,  # Azure's IKE SA lifetime is 28800 s
}
CHILD_SA_PARAMETERS: dict[str, Any] = {
    "EncryptionAlgorithm": "AES-256-GCM",
    "IntegrityAlgorithm": "SHA2-256",
    "DiffieHellmanGroup": 14,  # used only with EnablePFS, which stays off
    "LifeTimeInMinutes": 60,  # Azure's P2S SA lifetime is 3600 s
}
STRONG_HASHES = ("sha256", "sha384", "sha512")
EC_TYPES = {"secp256r1": "ECDSA256", "secp384r1": "ECDSA384", "secp521r1": "ECDSA521"}


def _san(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.RFC822Name)


def _common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def local_identifier(cert: x509.Certificate) -> tuple[str, Finding | None]:
    """The ``LocalIdentifier``: a subjectAltName the certificate carries, so that a responder
    can confirm it (Apple sends it as an e-mail identity when it holds ``@``, else as a DNS
    name). The CN when a SAN equals it (the seed's "Local ID"), else the first DNS SAN, else the
    first e-mail SAN; with no SAN the CN and a warning."""
    cn = _common_name(cert)
    dns, emails = _san(cert)
    if cn and cn in (emails if "@" in cn else dns):
        return cn, None
    if dns:
        return dns[0], None
    if emails:
        return emails[0], None
    return cn or cert.subject.rfc4514_string(), Finding(
        "warning",
        "ikev2-no-san",
        f"certificate {describe_cert(cert)} has no DNS or e-mail subjectAltName: the profile "
        "sends its common name as Local ID, which a responder can confirm only from a "
        "subjectAltName, so the connection may be refused",
        hint="issue certificates with a DNS subjectAltName equal to the CN (ovpn-toolkit ca "
        "issue does; New-SelfSignedCertificate -DnsName NAME -Subject CN=NAME does)",
    )


def fitness(cert: x509.Certificate) -> list[Finding]:
    """Can an Apple device authenticate to Azure with this certificate over IKEv2?"""
    who = describe_cert(cert)
    findings: list[Finding] = []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    except x509.ExtensionNotFound:
        client_auth = False
    if not client_auth:
        findings.append(
            Finding(
                "error",
                "ikev2-no-client-auth",
                f"certificate {who} has no Client Authentication extended key usage",
                hint="Azure requires it; issue a client certificate (ovpn-toolkit ca issue)",
            )
        )
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            findings.append(
                Finding(
                    "error",
                    "ikev2-weak-key",
                    f"certificate {who} has an RSA key of {key.key_size} bits",
                    hint="Apple devices need RSA 2048 bits or more",
                )
            )
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in EC_TYPES):
        findings.append(
            Finding(
                "error",
                "ikev2-key-type",
                f"certificate {who}: its key type is not one Apple's IKEv2 client uses",
                hint="use RSA 2048 bits or more (what Azure documents)",
            )
        )
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name not in STRONG_HASHES:
        findings.append(
            Finding(
                "error",
                "ikev2-weak-signature",
                f"certificate {who} is signed with "
                f"{algorithm.name.upper() if algorithm else 'an unknown hash'}",
                hint="Apple devices need SHA-256 or stronger; reissue the certificate",
            )
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            findings.append(
                Finding(
                    "error",
                    "ikev2-key-usage",
                    f"certificate {who}: its key usage does not allow digital signatures, "
                    "which IKEv2 authentication makes",
                    hint="reissue with key usage digitalSignature",
                )
            )
    except x509.ExtensionNotFound:
        pass
    return findings


def _certificate_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_TYPES[key.curve.name]
    return "RSA"


class IKEv2Target(Target):
    name = "ikev2"
    title = "macOS/iOS built-in IKEv2 (.mobileconfig)"
    platform = "Mac and iPhone"
    uses_profile = False

    def check_package(self, package: AzurePackage) -> None:
        package.require_vpn_settings(self.name)

    file_label = "ikev2"

    def stem(self, ctx: TargetContext) -> str:
        return f"{self.name}/{self.file_stem(ctx)}"

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        warnings: list[Finding] = [
            Finding(
                "warning",
                "ikev2-unverified",
                "the IKEv2 profile is checked against Apple's schema and a strongSwan "
                "responder set up like Azure's, not on a device: install it on one Mac or "
                "iPhone before rolling it out",
            )
        ]
        if ctx.credentials is not None:
            cert = ctx.credentials.certificate
            raise_for_errors(fitness(cert))
            _, finding = local_identifier(cert)
            if finding is not None:
                warnings.append(finding)
        return [], warnings

    def payloads(self, ctx: TargetContext, password: bytes) -> dict[str, Any]:
        """The profile as a dictionary (what :mod:`plistlib` writes)."""
        creds = require_credentials(ctx)
        settings = ctx.vpn_settings
        if settings is None or not settings.server:  # pragma: no cover - check_package
            raise ValueError("the ikev2 target needs the package's VpnSettings")
        server = settings.server
        identifier = f"{bundle_identifier(ctx.gateway_id, ctx.name)}.ikev2"
        identity_uuid = stable_uuid(identifier, "identity", creds.summary.thumbprint_sha1)
        local_id, _ = local_identifier(creds.certificate)
        identity = export_pkcs12(
            creds.private_key,
            creds.certificate,
            creds.chain,
            password,
            friendly_name=ctx.display_name,
            legacy=True,
        )
        pkcs12_payload: dict[str, Any] = {
            "PayloadType": PKCS12_PAYLOAD,
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{identifier}.identity",
            "PayloadUUID": identity_uuid,
            "PayloadDisplayName": f"{ctx.display_name} (identity)",
            "PayloadCertificateFileName": f"{ctx.name}.p12",
            "PayloadContent": identity,
        }
        if ctx.embed_pkcs12_password:
            pkcs12_payload["Password"] = password.decode("utf-8")
        vpn_payload: dict[str, Any] = {
            "PayloadType": VPN_PAYLOAD,
            "PayloadVersion": 1,
            "PayloadIdentifier": f"{identifier}.vpn",
            "PayloadUUID": stable_uuid(identifier, "vpn"),
            "PayloadDisplayName": ctx.display_name,
            "UserDefinedName": ctx.display_name,
            "VPNType": "IKEv2",
            "IKEv2": {
                "RemoteAddress": server,
                "RemoteIdentifier": server,
                "LocalIdentifier": local_id,
                "AuthenticationMethod": "Certificate",
                "CertificateType": _certificate_type(creds.certificate),
                "PayloadCertificateUUID": identity_uuid,
                "ExtendedAuthEnabled": 0,
                "IKESecurityAssociationParameters": dict(IKE_SA_PARAMETERS),
                "ChildSecurityAssociationParameters": dict(CHILD_SA_PARAMETERS),
            },
        }
        return {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadIdentifier": identifier,
            "PayloadUUID": stable_uuid(identifier, "profile"),
            "PayloadDisplayName": ctx.display_name,
            "PayloadDescription": f"IKEv2 VPN to {server} for {ctx.name} (made by ovpn-toolkit)",
            "PayloadContent": [pkcs12_payload, vpn_payload],
        }

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        stem = self.stem(ctx)
        password, password_files = pkcs12_password(ctx, stem)
        if ctx.embed_pkcs12_password:
            password_files = []  # the profile carries it
        data = plistlib.dumps(self.payloads(ctx, password), fmt=plistlib.FMT_XML, sort_keys=False)
        if ctx.signer is not None:
            data = ctx.signer.sign(data)
        return [PlannedFile(f"{stem}.mobileconfig", data), *password_files]

    def lint(self, profile: Profile) -> list[Finding]:
        return [
            Finding(
                "error",
                "not-an-openvpn-target",
                "the ikev2 target writes a .mobileconfig, not an OpenVPN profile; check lints "
                "OpenVPN profiles",
            )
        ]

    def next_step(self, file_to_send: Path) -> str:
        password = file_to_send.with_name(password_file(file_to_send.stem))
        return (
            f"Mac/iPhone (built-in IKEv2): send {file_to_send} (or upload it to your MDM) and, "
            f"unless embedded, the password ({password} unless you chose one) by another "
            "channel; the user installs the profile (docs/how-to/ikev2-mac-iphone.md)"
        )
