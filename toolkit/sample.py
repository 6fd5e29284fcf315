"""A synthetic, Azure-like P2S package: for `ovpn-toolkit demo` and for the tests.

Everything here is DEMO material: a stand-in public root (not DigiCert) in ``<ca>``, a fresh
tls-auth key, a made-up gateway GUID. It is laid out the way Azure lays out its zip.
"""

from __future__ import annotations

import io
import secrets
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Literal

from toolkit.ca import keys as pki

Dialect = Literal["classic", "chain"]

_HEADER = (
    "# For more information, please refer to documentation: "
    "https://learn.microsoft.com/azure/vpn-gateway/point-to-site-vpn-client-cert-mac\n"
)


@dataclass(frozen=True)
class SampleGateway:
    """The gateway side of a synthetic package: what a test server needs, what a zip holds."""

    guid: str
    public_root: pki.IssuedCertificate
    server: pki.IssuedCertificate
    tls_auth_key: str
    generation: Literal["current", "old"] = "current"
    dialect: Dialect = "classic"
    extra_directives: tuple[str, ...] = field(default=())

    @property
    def server_name(self) -> str:
        """What ``verify-x509-name`` checks: the server certificate's CN."""
        return f"{self.guid}.vpn.azure.com"

    @property
    def remote_host(self) -> str:
        return f"azuregateway-{self.guid}-{self.guid.replace('-', '')[:12]}.vpn.azure.com"

    def profile_text(self) -> str:
        """``OpenVPN/vpnconfig.ovpn`` as Azure writes it, placeholders unfilled."""
        ca_pem = self.public_root.cert_pem.decode("ascii").strip()
        current = self.generation == "current"
        out = [_HEADER] if current else []
        out.append(
            "client\n"
            f"remote {self.remote_host} 443\n"
            f"verify-x509-name '{self.server_name}' name\n"
            "remote-cert-tls server\n"
        )
        if current:
            out.append("\n# For OpenVPN 2.6, please uncomment below\n#disable-dco\n")
        out.append(
            "\ndev tun\nproto tcp\nresolv-retry infinite\nnobind\n\n"
            "auth SHA256\ncipher AES-256-GCM\npersist-key\npersist-tun\n\n"
            "tls-timeout 30\ntls-version-min 1.2\nkey-direction 1\n\n"
        )
        if current:
            out.append(
                "# For OpenVPN Connect Client 3.x, please comment out the log option below\n"
            )
        out.append("log openvpn.log\nverb 3\n\n")
        if current:
            out.append(
                "# For OpenVPN Connect Client 3.x, to prevent periodic client reconnects due to "
                "no traffic being sent to the client, please uncomment below\n#ping-restart 0\n\n"
            )
        out.extend(line + "\n" for line in self.extra_directives)
        if self.dialect == "chain":
            cert_body = "$CLIENT_CERTIFICATE\n$INTERMEDIATE_CERTIFICATE\n$ROOT_CERTIFICATE"
        else:
            cert_body = "$CLIENTCERTIFICATE"
        cert_comment = (
            "# P2S client certificate\n# Please fill this field with a PEM formatted client "
            "certificate\n# Alternatively, configure 'cert PATH_TO_CLIENT_CERT' to use input from "
            "a PEM certificate file.\n"
            if current
            else "# P2S client certificate\n# please fill this field with a PEM formatted cert\n"
        )
        key_comment = (
            "# P2S client certificate private key\n# Please fill this field with a PEM formatted "
            "private key of the client certificate.\n# Alternatively, configure 'key "
            "PATH_TO_CLIENT_KEY' to use input from a PEM key file.\n"
            if current
            else "# P2S client root certificate private key\n"
            "# please fill this field with a PEM formatted key\n"
        )
        out.append(
            f"# P2S CA root certificate\n<ca>\n{ca_pem}\n</ca>\n\n"
            f"# Pre Shared Key\n<tls-auth>\n{self.tls_auth_key.strip()}\n</tls-auth>\n\n"
            f"{cert_comment}<cert>\n{cert_body}\n</cert>\n\n"
            f"{key_comment}<key>\n$PRIVATEKEY\n</key>\n"
        )
        return "".join(out)

    def vpn_settings_xml(self, routes: tuple[str, ...] = ("10.1.0.0/16",)) -> str:
        return (
            '<?xml version="1.0"?>\n'
            '<VpnProfile xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
            f"  <VpnServer>{self.remote_host}</VpnServer>\n"
            "  <VpnType>IkeV2</VpnType>\n"
            f"  <Routes>{','.join(routes)}</Routes>\n"
            "</VpnProfile>\n"
        )

    def zip_bytes(
        self,
        *,
        backslashes: bool = False,
        top_folder: str | None = None,
        with_generic: bool = True,
        crlf: bool = False,
        bom: bool = False,
    ) -> bytes:
        """The package as Azure's portal serves it (variants seen in the wild on request)."""
        profile = self.profile_text()
        if crlf:
            profile = profile.replace("\n", "\r\n")
        data = (b"\xef\xbb\xbf" if bom else b"") + profile.encode("utf-8")
        files: dict[str, bytes] = {"OpenVPN/vpnconfig.ovpn": data}
        if with_generic:
            files["Generic/VpnSettings.xml"] = self.vpn_settings_xml().encode("utf-8")
            files["Generic/VpnServerRoot.cer"] = self.public_root.cert_der
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in files.items():
                full = f"{top_folder}/{name}" if top_folder else name
                if backslashes:
                    full = full.replace("/", "\\")
                archive.writestr(full, content)
        return buffer.getvalue()


def make_gateway(
    *,
    generation: Literal["current", "old"] = "current",
    dialect: Dialect = "classic",
    extra_directives: tuple[str, ...] = (),
    key_type: pki.KeyType = "rsa2048",
) -> SampleGateway:
    """A fresh synthetic gateway: stand-in public root, server certificate, tls-auth key."""
    guid = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
    public_root = pki.create_root("DEMO stand-in public root (not DigiCert)", key_type=key_type)
    server = pki.issue_server_certificate(public_root, f"{guid}.vpn.azure.com")
    return SampleGateway(
        guid=guid,
        public_root=public_root,
        server=server,
        tls_auth_key=pki.generate_tls_auth_key(),
        generation=generation,
        dialect=dialect,
        extra_directives=extra_directives,
    )
