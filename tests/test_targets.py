"""toolkit.targets via plan_user: what each client gets, checked by parsing the output back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import io
import plistlib
import re
import uuid
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from toolkit.ca import keys as pki
from toolkit.check import check_profile
from toolkit.credentials import ClientCredentials, load_pem_credentials
from toolkit.errors import ProfileError
from toolkit.findings import Edit
from toolkit.package import AzurePackage, load_package
from toolkit.passphrase import PassphraseSource
from toolkit.plan import UserPlan, UserRequest, plan_user
from toolkit.profile import Block, Profile
from toolkit.sample import SampleGateway
from toolkit.targets import TargetPlan
from toolkit.targets.ios.options import ios_fatal_reason
from toolkit.targets.tunnelblick.options import tunnelblick_refusal_reason

SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
TB_PREFERENCE = "TBPreference-notOKToCheckThatIPAddressDidNotChangeAfterConnection"
ALL_TARGETS = ("tunnelblick", "ios", "openvpn")


# --- helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def creds(
    client: pki.IssuedCertificate, tmp_path_factory: pytest.TempPathFactory
) -> ClientCredentials:
    folder = tmp_path_factory.mktemp("creds")
    (folder / "alice.pem").write_bytes(client.cert_pem)
    (folder / "alice.key").write_bytes(client.key_pem())
    return load_pem_credentials(folder / "alice.pem", folder / "alice.key", PassphraseSource())


def package_of(gateway: SampleGateway, tmp_path: Path, name: str = "VNet1GW") -> AzurePackage:
    path = tmp_path / f"{name}.zip"
    path.write_bytes(gateway.zip_bytes())
    return load_package(path)


def variant(gateway: SampleGateway, **changes: object) -> SampleGateway:
    """The same keys, another template (no RSA key generation)."""
    return dataclasses.replace(gateway, **changes)  # type: ignore[arg-type]


def plan(
    gateway: SampleGateway,
    tmp_path: Path,
    creds: ClientCredentials,
    *targets: str,
    name: str = "alice",
    **request: object,
) -> UserPlan:
    package = package_of(gateway, tmp_path)
    return plan_user(package, creds, UserRequest(name, targets=targets, **request))  # type: ignore[arg-type]


def target_plan(user_plan: UserPlan, target: str) -> TargetPlan:
    (found,) = [p for p in user_plan.targets if p.target == target]
    return found


def file_data(tplan: TargetPlan, suffix: str) -> bytes:
    (found,) = [f.data for f in tplan.files if f.path.endswith(suffix)]
    return found


def profile_of(tplan: TargetPlan) -> Profile:
    suffix = "config.ovpn" if tplan.target == "tunnelblick" else ".ovpn"
    return Profile.parse(file_data(tplan, suffix), f"{tplan.target} output")


def assert_credentials(profile: Profile, creds: ClientCredentials) -> None:
    cert_block = profile.block("cert")
    key_block = profile.block("key")
    assert cert_block is not None and key_block is not None
    certs = x509.load_pem_x509_certificates(cert_block.content.encode())
    assert certs[0].fingerprint(hashes.SHA256()) == creds.certificate.fingerprint(hashes.SHA256())
    key = serialization.load_pem_private_key(key_block.content.encode(), password=None)
    assert key.public_key().public_bytes(*SPKI) == creds.certificate.public_key().public_bytes(
        *SPKI
    )


def block_lines(profile: Profile, names: tuple[str, ...] = ("cert", "key")) -> set[int]:
    """1-based line numbers of the bodies of the named blocks."""
    lines: set[int] = set()
    for block in profile.blocks():
        if block.name in names:
            lines.update(range(block.line + 1, block.line + 1 + len(block.body)))
    return lines


def assert_edits_explain_the_diff(template: str, output: str, edits: list[Edit]) -> None:
    """Every line that differs from Azure's profile is reported as an edit, and vice versa."""
    old, new = template.split("\n"), output.split("\n")
    placeholders = block_lines(Profile.parse(template))
    credentials = block_lines(Profile.parse(output))
    gone: set[int] = set()
    inserted: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("delete", "replace"):
            gone.update(n for n in range(i1 + 1, i2 + 1) if n not in placeholders)
        if tag in ("insert", "replace"):
            inserted.extend(new[j] for j in range(j1, j2) if j + 1 not in credentials)
    reported_gone = {e.line for e in edits if e.action in ("removed", "changed")}
    assert gone == reported_gone
    assert len(inserted) == len([e for e in edits if e.action in ("added", "changed")])
    filled = {e.directive for e in edits if e.action == "filled"}
    assert filled == {"<cert>", "<key>"}
    for edit in edits:
        assert edit.reason.strip()
        assert edit.directive
        if edit.action in ("removed", "changed"):
            assert edit.line > 0
            assert edit.directive in old[edit.line - 1]


def directives(profile: Profile) -> list[tuple[str, list[str], str]]:
    return [(d.name, d.args, d.raw) for d in profile.directives()]


def items_except_credentials(profile: Profile, skip_lines: set[int] | None = None) -> list[str]:
    """Every raw line outside <cert>/<key>, skipping the items that start on ``skip_lines``."""
    skip = skip_lines or set()
    return [
        line
        for item in profile.items
        if item.line not in skip and not (isinstance(item, Block) and item.name in ("cert", "key"))
        for line in item.raw_lines
    ]


# --- tunnelblick -----------------------------------------------------------------------------
TB_EXTRA = (
    "log-append /var/log/openvpn.log",
    "syslog",
    "config other.conf",
    "register-dns",
    "block-outside-dns",
    "status openvpn-status.log",
    "ping-restart 0",
    "mute 20",
)


def test_tunnelblick_removes_refused_options_only(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(gateway, extra_directives=TB_EXTRA)
    tplan = target_plan(plan(gw, tmp_path, creds, "tunnelblick"), "tunnelblick")
    template = Profile.parse(gw.profile_text())
    out = profile_of(tplan)

    removed = {e.line for e in tplan.edits if e.action == "removed"}
    removed_names = sorted(e.directive for e in tplan.edits if e.action == "removed")
    assert removed_names == sorted(
        ["log", "log-append", "syslog", "config", "register-dns", "block-outside-dns", "status"]
    )
    assert all(tunnelblick_refusal_reason(d.name) is None for d in out.directives())
    # everything else is untouched: directives, comments, blocks, blank lines, in order
    expected = [d for d in directives(template) if d[0] not in removed_names]
    assert directives(out) == expected
    assert ("ping-restart", ["0"]) in [(n, a) for n, a, _ in directives(out)]
    assert items_except_credentials(out) == items_except_credentials(template, removed)
    assert out.first("disable-dco") is None
    assert_credentials(out, creds)
    assert_edits_explain_the_diff(gw.profile_text(), out.serialize(), tplan.edits)


def test_tunnelblick_stock_template(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    tplan = target_plan(plan(gateway, tmp_path, creds, "tunnelblick"), "tunnelblick")
    assert [(e.directive, e.action) for e in tplan.edits if e.action != "filled"] == [
        ("log", "removed")
    ]
    assert tplan.warnings == []
    out = profile_of(tplan)
    assert out.first("log") is None
    # Azure's commented '#disable-dco' stays a comment: never activated for Tunnelblick
    assert "#disable-dco" in out.serialize()
    assert out.first("disable-dco") is None
    assert_edits_explain_the_diff(gateway.profile_text(), out.serialize(), tplan.edits)


def test_tunnelblick_active_disable_dco_removed_with_warning(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(gateway, extra_directives=("disable-dco",))
    user_plan = plan(gw, tmp_path, creds, "tunnelblick")
    tplan = target_plan(user_plan, "tunnelblick")
    line = gw.profile_text().split("\n").index("disable-dco") + 1
    assert profile_of(tplan).first("disable-dco") is None
    assert next(e for e in tplan.edits if e.directive == "disable-dco").line == line
    assert [w.code for w in tplan.warnings] == ["disable-dco-removed"]
    assert tplan.warnings[0].level == "warning"
    assert tplan.warnings[0].line == line
    assert tplan.warnings[0] in user_plan.warnings


def info_plist(tplan: TargetPlan) -> dict[str, object]:
    return plistlib.loads(file_data(tplan, "Info.plist"))  # type: ignore[no-any-return]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def test_tunnelblick_info_plist(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    plist = info_plist(target_plan(plan(gateway, tmp_path, creds, "tunnelblick"), "tunnelblick"))
    assert set(plist) == {
        "TBPackageVersion",
        "CFBundleIdentifier",
        "CFBundleVersion",
        "TBReplaceIdentical",
        TB_PREFERENCE,
    }
    assert plist["TBPackageVersion"] == "1"
    assert plist["TBReplaceIdentical"] == "yes"
    assert plist[TB_PREFERENCE] is True
    identifier = plist["CFBundleIdentifier"]
    assert isinstance(identifier, str)
    assert re.fullmatch(r"[A-Za-z0-9.-]+", identifier)
    assert ".." not in identifier
    assert not identifier.startswith(".") and not identifier.endswith(".")
    version = plist["CFBundleVersion"]
    assert isinstance(version, str)
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)*", version)


def test_tunnelblick_bundle_identifier_stable_per_gateway_and_user(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    def identifier(gw: SampleGateway, name: str, folder: str) -> str:
        (tmp_path / folder).mkdir(exist_ok=True)
        tplan = target_plan(
            plan(gw, tmp_path / folder, creds, "tunnelblick", name=name), "tunnelblick"
        )
        value = info_plist(tplan)["CFBundleIdentifier"]
        assert isinstance(value, str)
        return value

    first = identifier(gateway, "alice", "a")
    assert identifier(gateway, "alice", "b") == first  # re-issuing replaces the installed one
    assert identifier(gateway, "bob", "c") != first
    other_gateway = variant(gateway, guid=str(uuid.uuid4()))
    assert identifier(other_gateway, "alice", "d") != first


def test_tunnelblick_bundle_version_grows_with_a_newer_certificate(
    gateway: SampleGateway,
    tmp_path: Path,
    client: pki.IssuedCertificate,
    p2s_root: pki.IssuedCertificate,
    creds: ClientCredentials,
) -> None:
    now = pki.utcnow()
    versions = []
    for days_ago in (40, 3):
        renewed = pki.issue_certificate(
            p2s_root,
            "alice@contoso.com",
            key=client.private_key,
            not_before=now - dt.timedelta(days=days_ago),
        )
        newer = dataclasses.replace(creds, certificate=renewed.certificate)
        tplan = target_plan(plan(gateway, tmp_path, newer, "tunnelblick"), "tunnelblick")
        version = info_plist(tplan)["CFBundleVersion"]
        assert isinstance(version, str)
        versions.append(version_tuple(version))
    assert versions[1] > versions[0]
    # and the same certificate gives the same version (idempotent re-runs)
    again = [
        info_plist(target_plan(plan(gateway, tmp_path, creds, "tunnelblick"), "tunnelblick"))[
            "CFBundleVersion"
        ]
        for _ in range(2)
    ]
    assert again[0] == again[1]


def test_tunnelblick_bundle_and_zip(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    tplan = target_plan(plan(gateway, tmp_path, creds, "tunnelblick"), "tunnelblick")
    assert tplan.folder == "tunnelblick"
    paths = sorted(f.path for f in tplan.files)
    assert paths == [
        "tunnelblick/alice-mac.tblk.zip",
        "tunnelblick/alice-mac.tblk/Contents/Info.plist",
        "tunnelblick/alice-mac.tblk/Contents/Resources/config.ovpn",
    ]
    assert all(f.mode == 0o600 for f in tplan.files)

    with zipfile.ZipFile(io.BytesIO(file_data(tplan, ".tblk.zip"))) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert {n.split("/")[0] for n in names} == {"alice-mac.tblk"}
        assert "alice-mac.tblk/" in names
        files = sorted(n for n in names if not n.endswith("/"))
        assert files == [
            "alice-mac.tblk/Contents/Info.plist",
            "alice-mac.tblk/Contents/Resources/config.ovpn",
        ]
        for name in files:
            planned = f"tunnelblick/{name}"
            assert archive.read(name) == next(f.data for f in tplan.files if f.path == planned)


# --- ios -------------------------------------------------------------------------------------
IOS_EXTRA = (
    "status x.log",
    "management 127.0.0.1 7505",
    "management-hold",
    "fragment 1300",
    "ifconfig-pool-persist x",
    "show-net",
    "ping-restart 0",
)


def test_ios_removes_fatal_options_and_unquotes_verify_name(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(gateway, extra_directives=IOS_EXTRA)
    user_plan = plan(gw, tmp_path, creds, "ios", display_name="Alice @ Contoso")
    tplan = target_plan(user_plan, "ios")
    assert [f.path for f in tplan.files] == ["ios/alice-iphone.ovpn"]
    data = file_data(tplan, ".ovpn")
    out = Profile.parse(data)

    removed = sorted(e.directive for e in tplan.edits if e.action == "removed")
    assert removed == sorted(
        [
            "log",
            "status",
            "management",
            "management-hold",
            "fragment",
            "ifconfig-pool-persist",
            "show-net",
        ]
    )
    assert all(ios_fatal_reason(d.name) is None for d in out.directives())
    assert out.first("ping-restart") is not None  # accepted by the core: kept

    verify = out.first("verify-x509-name")
    assert verify is not None
    assert verify.raw == f"verify-x509-name {gateway.server_name} name"
    assert verify.args == [gateway.server_name, "name"]

    lines = data.decode().split("\n")
    assert lines[0] == "# OVPN_ACCESS_SERVER_PROFILE=Alice @ Contoso"
    friendly = out.first("setenv")
    assert friendly is not None
    assert friendly.args == ["FRIENDLY_NAME", "Alice @ Contoso"]
    assert all(len(line.encode()) <= 512 for line in lines)
    assert len(data) <= 262144
    assert_credentials(out, creds)
    assert_edits_explain_the_diff(gw.profile_text(), out.serialize(), tplan.edits)

    # everything else untouched
    kept = [d for d in directives(Profile.parse(gw.profile_text())) if d[0] not in removed]
    kept = [d for d in kept if d[0] != "verify-x509-name"]
    got = [d for d in directives(out) if d[0] not in ("verify-x509-name", "setenv")]
    assert got == kept


def test_ios_default_display_name_names_user_and_gateway(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    user_plan = plan(gateway, tmp_path, creds, "ios")
    assert user_plan.display_name == "alice (VNet1GW)"
    out = file_data(target_plan(user_plan, "ios"), ".ovpn").decode()
    assert out.startswith("# OVPN_ACCESS_SERVER_PROFILE=alice (VNet1GW)\n")
    assert 'setenv FRIENDLY_NAME "alice (VNet1GW)"\n' in out


def test_ios_replaces_existing_meta_names(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(
        gateway,
        extra_directives=("# OVPN_ACCESS_SERVER_PROFILE=old name", 'setenv FRIENDLY_NAME "old"'),
    )
    out = file_data(target_plan(plan(gw, tmp_path, creds, "ios"), "ios"), ".ovpn").decode()
    assert "old" not in out
    assert out.count("OVPN_ACCESS_SERVER_PROFILE=") == 1
    assert out.count("FRIENDLY_NAME") == 1


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        pytest.param(("dev tap",), "TAP mode is not supported", id="dev-tap"),
        pytest.param(("ca ca.crt",), "'ca' names a file", id="file-reference"),
        pytest.param(("tls-crypt tc.key",), "'tls-crypt' names a file", id="tls-crypt-file"),
        pytest.param(("secret static.key",), "'secret' is not supported", id="static-key"),
        pytest.param(("pkcs12 alice.p12",), "'pkcs12'", id="pkcs12"),
        pytest.param(("mode server",), "'mode server' is not supported", id="mode-server"),
        pytest.param(
            ("#" + "x" * 600,), "over OpenVPN Connect's 512-byte line limit", id="long-line"
        ),
    ],
)
def test_ios_refuses_what_it_cannot_fix(
    gateway: SampleGateway,
    tmp_path: Path,
    creds: ClientCredentials,
    extra: tuple[str, ...],
    fragment: str,
) -> None:
    gw = variant(gateway, extra_directives=extra)
    line = gw.profile_text().split("\n").index(extra[0]) + 1
    with pytest.raises(ProfileError) as info:
        plan(gw, tmp_path, creds, "ios")
    assert fragment in info.value.message
    assert f"line {line}" in info.value.message
    assert info.value.hint


def test_ios_profile_over_256_kib_refused(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(gateway, extra_directives=tuple("#" + "y" * 500 for _ in range(600)))
    with pytest.raises(ProfileError, match="over OpenVPN Connect's 262144-byte limit"):
        plan(gw, tmp_path, creds, "ios")
    # the same profile is fine for OpenVPN 2 (no such limit there)
    assert plan(gw, tmp_path, creds, "openvpn").targets


# --- openvpn ---------------------------------------------------------------------------------
def test_openvpn_is_azure_profile_with_credentials(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    tplan = target_plan(plan(gateway, tmp_path, creds, "openvpn"), "openvpn")
    assert [f.path for f in tplan.files] == ["openvpn/alice-linux-windows.ovpn"]
    out = profile_of(tplan)
    template = Profile.parse(gateway.profile_text())
    assert items_except_credentials(out) == items_except_credentials(template)
    assert [type(i) for i in out.items] == [type(i) for i in template.items]
    assert out.first("log") is not None  # Azure's text, untouched
    assert_credentials(out, creds)
    assert [e.action for e in tplan.edits] == ["filled", "filled"]
    assert_edits_explain_the_diff(gateway.profile_text(), out.serialize(), tplan.edits)


def test_openvpn_disable_dco_uncomments_azure_line(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    tplan = target_plan(plan(gateway, tmp_path, creds, "openvpn", disable_dco=True), "openvpn")
    out = profile_of(tplan)
    text = out.serialize()
    line = gateway.profile_text().split("\n").index("#disable-dco") + 1
    assert "#disable-dco" not in text
    directive = out.first("disable-dco")
    assert directive is not None
    assert text.split("\n")[line - 1] == "disable-dco"  # in place of the comment
    changed = [e for e in tplan.edits if e.action == "changed"]
    assert [(e.line, e.directive) for e in changed] == [(line, "disable-dco")]
    assert_edits_explain_the_diff(gateway.profile_text(), text, tplan.edits)


def test_openvpn_disable_dco_added_to_old_template(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    gw = variant(gateway, generation="old")
    tplan = target_plan(plan(gw, tmp_path, creds, "openvpn", disable_dco=True), "openvpn")
    out = profile_of(tplan)
    names = [d.name for d in out.directives()]
    assert names.count("disable-dco") == 1
    assert names[names.index("client") + 1] == "disable-dco"
    assert [e.action for e in tplan.edits if e.directive == "disable-dco"] == ["added"]
    assert_edits_explain_the_diff(gw.profile_text(), out.serialize(), tplan.edits)


def test_openvpn_without_disable_dco_keeps_it_commented(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    out = profile_of(target_plan(plan(gateway, tmp_path, creds, "openvpn"), "openvpn"))
    assert out.first("disable-dco") is None
    assert "#disable-dco" in out.serialize()


# --- all targets -----------------------------------------------------------------------------
@pytest.mark.parametrize("generation", ["current", "old"])
@pytest.mark.parametrize("dialect", ["classic", "chain"])
def test_every_target_is_clean_for_its_own_check(
    gateway: SampleGateway,
    tmp_path: Path,
    creds: ClientCredentials,
    generation: str,
    dialect: str,
) -> None:
    gw = variant(gateway, generation=generation, dialect=dialect)
    user_plan = plan(gw, tmp_path, creds, *ALL_TARGETS)
    assert [p.target for p in user_plan.targets] == list(ALL_TARGETS)
    for tplan in user_plan.targets:
        out = profile_of(tplan)
        result = check_profile(out, tplan.target)
        assert result.clean, (tplan.target, result.findings)
        assert result.findings == []
        assert_credentials(out, creds)
        assert_edits_explain_the_diff(gw.profile_text(), out.serialize(), tplan.edits)
        for other in ("ca", "tls-auth"):
            block = out.block(other)
            template_block = Profile.parse(gw.profile_text()).block(other)
            assert block is not None and template_block is not None
            assert block.body == template_block.body


def test_default_targets_are_tunnelblick_and_ios(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    assert [p.target for p in plan(gateway, tmp_path, creds).targets] == ["tunnelblick", "ios"]


@pytest.mark.parametrize(
    ("target", "codes"),
    [
        ("ios", {"placeholder", "refused-option", "quoted-verify-x509-name"}),
        ("tunnelblick", {"placeholder", "refused-option"}),
        ("openvpn", {"placeholder"}),
    ],
)
def test_check_reports_the_stock_azure_profile(
    gateway: SampleGateway, target: str, codes: set[str]
) -> None:
    result = check_profile(Profile.parse(gateway.profile_text()), target)
    assert not result.clean
    assert {f.code for f in result.findings} == codes
    messages = " ".join(f.message for f in result.findings)
    assert "$CLIENTCERTIFICATE" in messages
    assert "$PRIVATEKEY" in messages
    if target != "openvpn":
        log_line = gateway.profile_text().split("\n").index("log openvpn.log") + 1
        assert f"line {log_line}: 'log'" in messages


def test_plan_json_has_no_key_material(
    gateway: SampleGateway, tmp_path: Path, creds: ClientCredentials
) -> None:
    user_plan = plan(gateway, tmp_path, creds, *ALL_TARGETS)
    dumped = repr(user_plan.to_json())
    assert "PRIVATE KEY" not in dumped
    assert creds.summary.thumbprint_sha1 in dumped
