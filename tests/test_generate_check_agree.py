"""generate and check agree (issue 8, item 3).

Property: for any profile the reader accepts - Azure's directives, every quoting style,
LF/CRLF/mixed line endings, a BOM, comments, blank lines, trailing spaces, a blank line before
a closing tag, every placeholder dialect - and for every target, ``check`` on what ``generate``
wrote finds no error. The rules ``adapt`` applies and the ones ``lint`` checks are the same
predicates (toolkit/targets/*), so a failure here is a disagreement, not a flaky test.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from toolkit.ca import keys as pki
from toolkit.check import check_profile
from toolkit.cli import app
from toolkit.credentials import ClientCredentials
from toolkit.errors import ExitCode
from toolkit.package import load_package
from toolkit.plan import UserRequest, plan_user
from toolkit.profile import Profile
from toolkit.sample import SampleGateway
from toolkit.targets import TARGETS
from toolkit.targets.tunnelblick.bundle import check_bundle, read_bundle

GENERATED = tuple(t for t in TARGETS if t != "mobileconfig")
CERT_BODIES = {
    "classic": ["$CLIENTCERTIFICATE"],
    "chain": ["$CLIENT_CERTIFICATE", "$INTERMEDIATE_CERTIFICATE", "$ROOT_CERTIFICATE"],
    "armoured": ["-----BEGIN CERTIFICATE-----", "$CLIENTCERTIFICATE", "-----END CERTIFICATE-----"],
    "empty": [],
}
KEY_BODIES = {
    "classic": ["$PRIVATEKEY"],
    "armoured": ["-----BEGIN PRIVATE KEY-----", "$PRIVATEKEY", "-----END PRIVATE KEY-----"],
    "empty": [],
}
EXTRA_LINES = [
    "# a comment an administrator added",
    "; a semicolon comment",
    "#disable-dco",
    "#ping-restart 0",
    "",
    "   ",
]


def quoted(value: str, style: str) -> str:
    return {"bare": value, "single": f"'{value}'", "double": f'"{value}"'}[style]


@st.composite
def azure_profiles(draw: st.DrawFn, gateway: SampleGateway) -> bytes:
    """Azure's vpnconfig.ovpn, varied the ways real files vary."""
    verify_style = draw(st.sampled_from(["bare", "single", "double"]))
    remote_style = draw(st.sampled_from(["bare", "double"]))
    cert_body = CERT_BODIES[draw(st.sampled_from(sorted(CERT_BODIES)))]
    key_body = KEY_BODIES[draw(st.sampled_from(sorted(KEY_BODIES)))]
    optional = draw(st.sets(st.sampled_from(["log openvpn.log", "verb 3", "ping-restart 0"])))
    lines: list[str] = []
    block: str | None = None
    for line in gateway.profile_text().split("\n"):
        if line.startswith("<") and not line.startswith("</"):
            block = line.strip("<>")
            lines.append(line + draw(st.sampled_from(["", " ", "\t"])))
            if block == "cert":
                lines.extend(cert_body)
            elif block == "key":
                lines.extend(key_body)
            continue
        if line.startswith("</"):
            if draw(st.booleans()):
                lines.append("")  # blank line before the closing tag
            lines.append(line + draw(st.sampled_from(["", " "])))
            block = None
            continue
        if block in ("cert", "key"):
            continue
        if block is not None:
            lines.append(line)
            continue
        if line.startswith("verify-x509-name"):
            line = f"verify-x509-name {quoted(gateway.server_name, verify_style)} name"
        elif line.startswith("remote "):
            line = f"remote {quoted(gateway.remote_host, remote_style)} 443"
        elif line in ("log openvpn.log", "verb 3") and line not in optional:
            line = "#" + line
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(EXTRA_LINES)))
        lines.append(line + draw(st.sampled_from(["", "", " ", "\t", "  "])))
    if "ping-restart 0" in optional:
        lines.insert(2, "ping-restart 0")
    ending = draw(st.sampled_from(["lf", "crlf", "mixed"]))
    if ending == "mixed":
        text = "".join(ln + draw(st.sampled_from(["\n", "\r\n"])) for ln in lines)
    else:
        text = ("\r\n" if ending == "crlf" else "\n").join(lines)
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + text.encode("utf-8")


def _errors_of_outputs(
    package_bytes: bytes, creds: ClientCredentials, root: pki.IssuedCertificate
) -> dict[str, list[str]]:
    """Generate every target from the profile, then check each output as `check` does."""
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "vpnconfig.ovpn"
        source.write_bytes(package_bytes)
        package = load_package(source)  # the reader accepts it (raises otherwise)
        plan = plan_user(
            package,
            creds,
            # the .mobileconfig is built from the ios profile (its PKCS#12 export is slow)
            UserRequest(name="alice", targets=GENERATED),
            roots=[root.certificate],
        )
        by_target = {p.target: p for p in plan.targets}
        for target in TARGETS:
            if target == "tunnelblick":
                bundle_zip = Path(folder) / "alice.tblk.zip"
                bundle_zip.write_bytes(by_target[target].deliverable.data)
                bundle = read_bundle(bundle_zip)
                profile = Profile.parse(bundle.config or b"", str(bundle_zip))
                extra = check_bundle(bundle)
            else:
                # the .mobileconfig carries the ios profile's options; check lints that
                ovpn = by_target["ios" if target == "mobileconfig" else target].deliverable
                profile, extra = Profile.parse(ovpn.data, ovpn.path), []
            result = check_profile(profile, target, extra=extra)
            found[target] = [f.message for f in result.errors]
    return found


@pytest.fixture(scope="module")
def ec_client(p2s_root: pki.IssuedCertificate) -> pki.IssuedCertificate:
    """An EC client certificate: its key loads in microseconds where RSA's validation takes
    ~0.2 s per check (the property runs check four times per example). EC is a warning only."""
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.issue_certificate(p2s_root, "alice@contoso.com", key=key)


@settings(
    max_examples=max(20, settings.default.max_examples // 2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_check_accepts_whatever_generate_writes(
    data: st.DataObject,
    gateway: SampleGateway,
    ec_client: pki.IssuedCertificate,
    p2s_root: pki.IssuedCertificate,
) -> None:
    profile = data.draw(azure_profiles(gateway), label="profile")
    creds = ClientCredentials(
        ec_client.certificate, ec_client.private_key, (), "alice.pem", "alice.key"
    )
    errors = _errors_of_outputs(profile, creds, p2s_root)
    assert errors == {target: [] for target in TARGETS}


def test_the_issues_wildcard_is_refused_by_generate_and_check_alike(
    gateway: SampleGateway, client: pki.IssuedCertificate, tmp_path: Path
) -> None:
    """`verify-x509-name '*.vpn.azure.com' name` is copied input (Azure writes
    '<guid>.vpn.azure.com'): generate refuses it at load, check reports the same line."""
    text = gateway.profile_text().replace(
        f"'{gateway.server_name}'", "'*.vpn.azure.com'"
    )  # line 4 of Azure's file (after the documentation comment)
    package = tmp_path / "vpnconfig.ovpn"
    package.write_text(text)
    cert, key = tmp_path / "a.pem", tmp_path / "a.key"
    cert.write_bytes(client.cert_pem)
    key.write_bytes(client.key_pem())
    runner = CliRunner()
    gen = runner.invoke(
        app,
        ["generate", str(package), "--cert", str(cert), "--key", str(key), "-t", "ios",
         "-o", str(tmp_path / "out")],
    )  # fmt: skip
    assert gen.exit_code == int(ExitCode.INPUT)
    assert "line 4: the verify-x509-name value is a wildcard" in gen.stderr
    finished = tmp_path / "finished.ovpn"
    finished.write_text(
        text.replace("$CLIENTCERTIFICATE", client.cert_pem.decode()).replace(
            "$PRIVATEKEY", client.key_pem().decode()
        )
    )
    chk = runner.invoke(app, ["check", str(finished), "--target", "ios"])
    assert chk.exit_code == int(ExitCode.FINDINGS)
    assert "line 4: the verify-x509-name value is a wildcard" in chk.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("style", ["'", '"'])
def test_a_name_that_needs_quotes_is_refused_by_both(
    style: str, gateway: SampleGateway, client: pki.IssuedCertificate, tmp_path: Path
) -> None:
    """A subject-type verify-x509-name with spaces cannot be written bare, which OpenVPN
    Connect needs: adapt refuses it and lint flags it (neither passes it)."""
    value = f"{style}C=US, CN={gateway.server_name}{style}"
    text = gateway.profile_text().replace(f"'{gateway.server_name}' name", value)
    package = tmp_path / "vpnconfig.ovpn"
    package.write_text(text)
    creds = ClientCredentials(client.certificate, client.private_key, (), "a.pem", "a.key")
    with pytest.raises(Exception, match="cannot be written without quotes"):
        plan_user(load_package(package), creds, UserRequest(name="alice", targets=("ios",)))
    lint = check_profile(Profile.parse(text), "ios")
    assert any(f.code == "quoted-verify-x509-name" for f in lint.errors)
