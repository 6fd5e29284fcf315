"""toolkit.package: find Azure's profile in a zip, folder or bare .ovpn; refuse bad input."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from toolkit.errors import PackageError
from toolkit.package import MAX_ARCHIVE_BYTES, MAX_PROFILE_BYTES, VpnSettings, load_package
from toolkit.sample import SampleGateway

MiB = 1024 * 1024

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<VpnProfile><VpnServer>&lol3;</VpnServer><VpnType>IkeV2</VpnType></VpnProfile>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE VpnProfile SYSTEM "http://attacker.example/x.dtd">
<VpnProfile><VpnServer>x</VpnServer></VpnProfile>
"""


def build_zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def forge_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size the central directory declares for ``name``."""
    buf = bytearray(data)
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", buf, pos + 28)[0]
        if bytes(buf[pos + 46 : pos + 46 + name_len]) == name.encode():
            struct.pack_into("<I", buf, pos + 24, size)
            break
        pos = buf.find(b"PK\x01\x02", pos + 4)
    forged = bytes(buf)
    assert zipfile.ZipFile(io.BytesIO(forged)).getinfo(name).file_size == size
    return forged


def profile_bytes(gateway: SampleGateway) -> bytes:
    return gateway.profile_text().encode("utf-8")


def without_block(gateway: SampleGateway, name: str) -> bytes:
    text = gateway.profile_text()
    start = text.index(f"<{name}>")
    end = text.index(f"</{name}>") + len(f"</{name}>\n")
    return (text[:start] + text[end:]).encode("utf-8")


def corrupt_entry(data: bytes, name: str) -> bytes:
    """The zip's directory stays fine, but the compressed data of ``name`` is damaged."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    start = info.header_offset + 30 + len(info.filename) + min(100, info.compress_size // 4)
    end = start + min(40, info.compress_size // 2)
    return data[:start] + bytes(b ^ 0xFF for b in data[start:end]) + data[end:]


# --- rejection table -------------------------------------------------------------------------
Builder = Callable[[SampleGateway, Path], Path]


def zip_of(make: Callable[[SampleGateway], bytes]) -> Builder:
    def build(gateway: SampleGateway, tmp: Path) -> Path:
        path = tmp / "VNet1GW.zip"
        path.write_bytes(make(gateway))
        return path

    return build


def file_of(name: str, make: Callable[[SampleGateway], bytes]) -> Builder:
    def build(gateway: SampleGateway, tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(make(gateway))
        return path

    return build


def folder_of(files: Callable[[SampleGateway], dict[str, bytes]]) -> Builder:
    def build(gateway: SampleGateway, tmp: Path) -> Path:
        root = tmp / "VNet1GW"
        for name, data in files(gateway).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return root

    return build


def with_settings(xml: bytes) -> Callable[[SampleGateway], bytes]:
    return lambda g: build_zip(
        {"OpenVPN/vpnconfig.ovpn": profile_bytes(g), "Generic/VpnSettings.xml": xml}
    )


NO_OPENVPN = ["no OpenVPN/vpnconfig.ovpn"]
NO_OPENVPN_HINT = ["tunnel type", "Basic", "download the VPN client package again"]

REJECTIONS = [
    pytest.param(
        file_of("VNet1GW.zip", lambda g: b"this is not a zip file at all\n" * 10),
        ["not a zip file or the zip is corrupt"],
        ["download"],
        id="not-a-zip",
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes()[: len(g.zip_bytes()) // 2]),
        ["not a zip file or the zip is corrupt"],
        ["download"],
        id="truncated-zip",
    ),
    pytest.param(
        zip_of(lambda g: corrupt_entry(g.zip_bytes(), "OpenVPN/vpnconfig.ovpn")),
        ["OpenVPN/vpnconfig.ovpn: cannot be read"],
        ["corrupt"],
        id="corrupt-profile-data",
    ),
    pytest.param(
        zip_of(lambda g: corrupt_entry(g.zip_bytes(), "Generic/VpnSettings.xml")),
        ["Generic/VpnSettings.xml: cannot be read"],
        ["download again"],
        id="corrupt-settings-data",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"Generic/VpnServerRoot.cer": g.public_root.cert_der})),
        ["Generic/ has no VpnSettings.xml", "no OpenVPN/vpnconfig.ovpn"],
        ["download the VPN client package"],
        id="generic-without-settings",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"WindowsAmd64/VpnClientSetupAmd64.exe": b"MZ"})),
        [*NO_OPENVPN, "no Generic/VpnSettings.xml", "WindowsAmd64/"],
        NO_OPENVPN_HINT,
        id="no-openvpn-no-generic",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({})),
        [*NO_OPENVPN, "nothing usable"],
        NO_OPENVPN_HINT,
        id="empty-zip",
    ),
    pytest.param(
        folder_of(lambda g: {"WindowsX86/VpnClientSetupX86.exe": b"MZ"}),
        ["no OpenVPN/vpnconfig.ovpn in the folder"],
        NO_OPENVPN_HINT,
        id="folder-without-openvpn",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"../OpenVPN/vpnconfig.ovpn": profile_bytes(g)})),
        NO_OPENVPN,
        NO_OPENVPN_HINT,
        id="dotdot-entry-ignored",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"VNet1GW/../OpenVPN/vpnconfig.ovpn": profile_bytes(g)})),
        NO_OPENVPN,
        NO_OPENVPN_HINT,
        id="inner-dotdot-entry-ignored",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"/OpenVPN/vpnconfig.ovpn": profile_bytes(g)})),
        NO_OPENVPN,
        NO_OPENVPN_HINT,
        id="absolute-entry-ignored",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"C:\\OpenVPN\\vpnconfig.ovpn": profile_bytes(g)})),
        NO_OPENVPN,
        NO_OPENVPN_HINT,
        id="drive-letter-entry-ignored",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"OpenVPN/vpnconfig.ovpn": without_block(g, "cert")})),
        ["no <cert> block to fill"],
        ["certificate authentication"],
        id="no-cert-block",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"OpenVPN/vpnconfig.ovpn": without_block(g, "key")})),
        ["no <key> block to fill"],
        ["certificate authentication"],
        id="no-key-block",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"OpenVPN/vpnconfig.ovpn": without_block(g, "ca")})),
        ["missing <ca> block"],
        ["download the VPN client package"],
        id="no-ca-block",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"OpenVPN/vpnconfig.ovpn": without_block(g, "tls-auth")})),
        ["missing <tls-auth> block"],
        ["download the VPN client package"],
        id="no-tls-auth-block",
    ),
    pytest.param(
        file_of("vpnconfig.ovpn", lambda g: without_block(g, "tls-auth")),
        ["vpnconfig.ovpn: missing <tls-auth> block"],
        ["download"],
        id="bare-ovpn-no-tls-auth",
    ),
    pytest.param(
        zip_of(
            lambda g: build_zip(
                {"OpenVPN/vpnconfig.ovpn": g.profile_text().replace("</key>\n", "").encode()}
            )
        ),
        ["<key> is never closed"],
        [],
        id="unclosed-block",
    ),
    pytest.param(
        zip_of(
            lambda g: build_zip(
                {"OpenVPN/vpnconfig.ovpn": g.profile_text().encode("utf-16")}, compression=0
            )
        ),
        ["not UTF-8"],
        ["UTF-8"],
        id="utf16-profile",
    ),
    pytest.param(
        file_of(
            "vpnconfig.ovpn", lambda g: g.profile_text().replace("Pre", "Pr\xe9").encode("cp1252")
        ),
        ["vpnconfig.ovpn: not UTF-8"],
        ["UTF-8"],
        id="cp1252-bare-ovpn",
    ),
    pytest.param(
        zip_of(
            lambda g: build_zip(
                {
                    "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                    "VNet1GW/OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                }
            )
        ),
        ["more than one OpenVPN profile"],
        ["extracted .ovpn"],
        id="two-profiles",
    ),
    pytest.param(
        zip_of(with_settings(BILLION_LAUGHS)),
        ["Generic/VpnSettings.xml: contains a DTD or entity declaration"],
        ["tampered"],
        id="billion-laughs",
    ),
    pytest.param(
        zip_of(with_settings(EXTERNAL_DTD)),
        ["contains a DTD or entity declaration"],
        ["tampered"],
        id="external-dtd",
    ),
    pytest.param(
        zip_of(with_settings(b"<VpnProfile><VpnServer>x</VpnProfile>")),
        ["Generic/VpnSettings.xml: not well-formed XML"],
        ["download"],
        id="broken-xml",
    ),
    pytest.param(
        folder_of(
            lambda g: {
                "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                "Generic/VpnSettings.xml": BILLION_LAUGHS,
            }
        ),
        ["contains a DTD or entity declaration"],
        ["tampered"],
        id="folder-billion-laughs",
    ),
]


@pytest.mark.parametrize(("build", "fragments", "hint_fragments"), REJECTIONS)
def test_rejected(
    gateway: SampleGateway,
    tmp_path: Path,
    build: Builder,
    fragments: list[str],
    hint_fragments: list[str],
) -> None:
    path = build(gateway, tmp_path)
    with pytest.raises(PackageError) as info:
        load_package(path)
    error = info.value
    assert str(path) in error.message  # says where
    for fragment in fragments:
        assert fragment in error.message
    for fragment in hint_fragments:
        assert error.hint is not None
        assert fragment in error.hint


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="no such file or folder") as info:
        load_package(tmp_path / "nope.zip")
    assert info.value.hint is not None
    assert "Point-to-site" in info.value.hint


# --- size limits: refused without inflating ----------------------------------------------------
def compressible_profile(gateway: SampleGateway) -> bytes:
    """A real 2 MiB profile (a long comment) that deflates to a few KiB."""
    return profile_bytes(gateway) + b"#" + b"x" * (2 * MiB) + b"\n"


SIZE_LIMITS = [
    pytest.param(
        lambda g: forge_declared_size(
            g.zip_bytes(), "OpenVPN/vpnconfig.ovpn", MAX_PROFILE_BYTES + 1
        ),
        [f"profile is {MAX_PROFILE_BYTES + 1} bytes", f"over the {MAX_PROFILE_BYTES}-byte limit"],
        id="profile-declared-over-1MiB",
    ),
    pytest.param(
        lambda g: build_zip({"OpenVPN/vpnconfig.ovpn": compressible_profile(g)}),
        [f"over the {MAX_PROFILE_BYTES}-byte limit"],
        id="profile-really-2MiB",
    ),
    pytest.param(
        lambda g: forge_declared_size(
            build_zip(
                {
                    "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                    "WindowsAmd64/VpnClientSetupAmd64.exe": b"MZ" * 100,
                }
            ),
            "WindowsAmd64/VpnClientSetupAmd64.exe",
            200 * MiB,
        ),
        [f"over the {MAX_ARCHIVE_BYTES}-byte limit", "uncompressed"],
        id="archive-declares-200MiB",
    ),
    pytest.param(
        lambda g: build_zip(
            {f"WindowsAmd64/part{i}.bin": b"" for i in range(3)}
            | {"OpenVPN/vpnconfig.ovpn": profile_bytes(g)}
        ),
        None,
        id="control-small-archive-loads",
    ),
]


@pytest.mark.parametrize(("make", "fragments"), SIZE_LIMITS)
def test_size_limits_refused_without_inflating(
    gateway: SampleGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[SampleGateway], bytes],
    fragments: list[str] | None,
) -> None:
    path = tmp_path / "VNet1GW.zip"
    path.write_bytes(make(gateway))
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy_open(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(getattr(name, "filename", str(name)))
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    if fragments is None:  # the spy itself does not get in the way
        assert load_package(path).profile_entry == "OpenVPN/vpnconfig.ovpn"
        assert "OpenVPN/vpnconfig.ovpn" in opened
        return
    with pytest.raises(PackageError) as info:
        load_package(path)
    for fragment in fragments:
        assert fragment in info.value.message
    assert "zip bomb" in (info.value.hint or "") or "a few KiB" in (info.value.hint or "")
    assert opened == []  # nothing was decompressed


def test_entry_lying_about_its_size_is_not_read_past_the_limit(
    gateway: SampleGateway, tmp_path: Path
) -> None:
    """Declares a small size but inflates to 2 MiB: never more than declared is produced."""
    data = build_zip({"OpenVPN/vpnconfig.ovpn": compressible_profile(gateway)})
    path = tmp_path / "VNet1GW.zip"
    path.write_bytes(forge_declared_size(data, "OpenVPN/vpnconfig.ovpn", 4096))
    with pytest.raises(PackageError, match="cannot be read"):
        load_package(path)


@pytest.mark.parametrize("where", ["folder", "bare"])
def test_oversized_profile_on_disk_refused(
    gateway: SampleGateway, tmp_path: Path, where: str
) -> None:
    big = compressible_profile(gateway)
    if where == "folder":
        (tmp_path / "pkg" / "OpenVPN").mkdir(parents=True)
        (tmp_path / "pkg" / "OpenVPN" / "vpnconfig.ovpn").write_bytes(big)
        path = tmp_path / "pkg"
    else:
        path = tmp_path / "vpnconfig.ovpn"
        path.write_bytes(big)
    with pytest.raises(PackageError, match=f"over the {MAX_PROFILE_BYTES}-byte limit"):
        load_package(path)


# --- acceptance table ------------------------------------------------------------------------
SETTINGS_XML = "Generic/VpnSettings.xml"


def settings_of(gateway: SampleGateway) -> VpnSettings:
    return VpnSettings(server=gateway.remote_host, vpn_type="IkeV2", routes=("10.1.0.0/16",))


ACCEPTED = [
    pytest.param(
        zip_of(lambda g: g.zip_bytes()), "zip", "OpenVPN/vpnconfig.ovpn", True, id="azure"
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes(backslashes=True)),
        "zip",
        "OpenVPN/vpnconfig.ovpn",
        True,
        id="backslashes",
    ),
    pytest.param(
        zip_of(lambda g: build_zip({"openvpn/VPNCONFIG.OVPN": profile_bytes(g)})),
        "zip",
        "openvpn/VPNCONFIG.OVPN",
        False,
        id="letter-case",
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes(top_folder="VNet1GW")),
        "zip",
        "VNet1GW/OpenVPN/vpnconfig.ovpn",
        True,
        id="nested-top-folder",
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes(top_folder="VNet1GW", backslashes=True)),
        "zip",
        "VNet1GW/OpenVPN/vpnconfig.ovpn",
        True,
        id="nested-backslashes",
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes(with_generic=False)),
        "zip",
        "OpenVPN/vpnconfig.ovpn",
        False,
        id="openvpn-only",
    ),
    pytest.param(
        zip_of(lambda g: g.zip_bytes(crlf=True, bom=True)),
        "zip",
        "OpenVPN/vpnconfig.ovpn",
        True,
        id="crlf-bom",
    ),
    pytest.param(
        zip_of(
            lambda g: build_zip(
                {
                    "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                    "../OpenVPN/vpnconfig.ovpn": b"evil",
                    "/etc/OpenVPN/vpnconfig.ovpn": b"evil",
                }
            )
        ),
        "zip",
        "OpenVPN/vpnconfig.ovpn",
        False,
        id="unsafe-entries-beside-the-real-one",
    ),
    pytest.param(
        folder_of(
            lambda g: {
                "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
                SETTINGS_XML: g.vpn_settings_xml().encode(),
            }
        ),
        "folder",
        "OpenVPN/vpnconfig.ovpn",
        True,
        id="extracted-folder",
    ),
    pytest.param(
        folder_of(
            lambda g: {
                "openvpn/VpnConfig.OVPN": b"\xef\xbb\xbf"
                + g.profile_text().replace("\n", "\r\n").encode(),
                "GENERIC/vpnsettings.xml": g.vpn_settings_xml().encode(),
            }
        ),
        "folder",
        "openvpn/VpnConfig.OVPN",
        True,
        id="folder-letter-case-crlf-bom",
    ),
    pytest.param(
        file_of(
            "vpnconfig.ovpn", lambda g: b"\xef\xbb\xbf" + profile_bytes(g).replace(b"\n", b"\r\n")
        ),
        "ovpn",
        "vpnconfig.ovpn",
        False,
        id="bare-ovpn-crlf-bom",
    ),
]


@pytest.mark.parametrize(("build", "kind", "entry", "has_settings"), ACCEPTED)
def test_accepted(
    gateway: SampleGateway,
    tmp_path: Path,
    build: Builder,
    kind: str,
    entry: str,
    has_settings: bool,
) -> None:
    package = load_package(build(gateway, tmp_path))
    assert package.kind == kind
    assert package.profile_entry == entry
    # LF only, no BOM, and otherwise exactly what Azure wrote
    assert package.profile_text == gateway.profile_text()
    assert "\r" not in package.profile_text
    assert not package.profile_text.startswith("\ufeff")
    assert package.vpn_settings == (settings_of(gateway) if has_settings else None)
    profile = package.profile()
    assert {b.name for b in profile.blocks()} >= {"ca", "tls-auth", "cert", "key"}
    assert all(".." not in e.split("/") and not e.startswith("/") for e in package.entries)


def test_nested_folder_one_level_up(gateway: SampleGateway, tmp_path: Path) -> None:
    """An extracted download passed by its parent folder (the top folder is one level down)."""
    folder_of(
        lambda g: {
            "OpenVPN/vpnconfig.ovpn": profile_bytes(g),
            SETTINGS_XML: g.vpn_settings_xml().encode(),
        }
    )(gateway, tmp_path)
    package = load_package(tmp_path)
    assert package.profile_entry == "VNet1GW/OpenVPN/vpnconfig.ovpn"
    assert package.vpn_settings == settings_of(gateway)


def test_source_label_and_checksum(package_zip: Path, gateway: SampleGateway) -> None:
    package = load_package(package_zip)
    assert package.source_label == f"{package_zip}:OpenVPN/vpnconfig.ovpn"
    assert len(package.profile_sha256) == 64
    assert set(package.entries) == {
        "OpenVPN/vpnconfig.ovpn",
        "Generic/VpnSettings.xml",
        "Generic/VpnServerRoot.cer",
    }
    # the profile's errors name the file inside the zip
    assert package.profile().source == package.source_label


@pytest.mark.parametrize(
    ("routes_xml", "expected"),
    [
        ("10.1.0.0/16", ("10.1.0.0/16",)),
        (
            "10.1.0.0/16, 10.2.0.0/24,,192.168.0.0/24 ",
            ("10.1.0.0/16", "10.2.0.0/24", "192.168.0.0/24"),
        ),
        ("", ()),
    ],
)
def test_vpn_settings_routes(
    gateway: SampleGateway, tmp_path: Path, routes_xml: str, expected: tuple[str, ...]
) -> None:
    xml = gateway.vpn_settings_xml().replace("10.1.0.0/16", routes_xml)
    path = tmp_path / "VNet1GW.zip"
    path.write_bytes(with_settings(xml.encode())(gateway))
    settings = load_package(path).vpn_settings
    assert settings is not None
    assert settings.routes == expected
    assert settings.server == gateway.remote_host
    assert settings.vpn_type == "IkeV2"
