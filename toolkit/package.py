"""Read an Azure P2S client configuration package: the zip, an extracted folder, or a bare .ovpn.

Everything is read in memory; nothing is ever extracted. Entries with absolute paths or
``..`` are never used, and oversized profiles or archives are refused before inflating.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from xml.parsers import expat

from toolkit.contents import COPIED_HINT, content_problems
from toolkit.errors import PackageError, ProfileError, UsageError
from toolkit.fill import FOREIGN_HINT, FOREIGN_MESSAGE, foreign_placeholders
from toolkit.profile import Profile, normalize_text

MAX_PROFILE_BYTES = 1024 * 1024
MAX_ARCHIVE_BYTES = 100 * 1024 * 1024
MAX_XML_BYTES = 1024 * 1024
PROFILE_PATH = ("openvpn", "vpnconfig.ovpn")
SETTINGS_PATH = ("generic", "vpnsettings.xml")
SERVER_ROOT_PATH = ("generic", "vpnserverroot.cer")
MAX_CERT_BYTES = 64 * 1024
REQUIRED_BLOCKS = ("ca", "tls-auth", "cert", "key")

NO_OPENVPN_HINT = (
    "the gateway's tunnel type does not include OpenVPN, or its SKU is Basic (which has no "
    "OpenVPN): in the Azure portal open the gateway's 'Point-to-site configuration', choose a "
    "tunnel type with 'OpenVPN (SSL)', save, then download the VPN client package again"
)
NO_GENERIC_HINT = (
    "the gateway's tunnel type does not include IKEv2, or its SKU is Basic: in the Azure portal "
    "open the gateway's 'Point-to-site configuration', choose a tunnel type with 'IKEv2' (for "
    "example 'IKEv2 and OpenVPN (SSL)'), save, then download the VPN client package again (its "
    "Generic/ folder holds VpnSettings.xml)"
)


@dataclass(frozen=True)
class VpnSettings:
    """What ``Generic/VpnSettings.xml`` says about the gateway (present with IKEv2/SSTP)."""

    server: str | None = None
    vpn_type: str | None = None
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AzurePackage:
    """The profile template found in a package, plus what else the package told us.

    ``profile_text`` is None for a package with only ``Generic/`` (a gateway with IKEv2 but no
    OpenVPN): only targets that need no OpenVPN profile (``ikev2``) work with it. ``server_root``
    is ``Generic/VpnServerRoot.cer`` as found (DER or PEM bytes), when present."""

    source: str
    kind: Literal["zip", "folder", "ovpn"]
    profile_entry: str | None
    profile_text: str | None
    vpn_settings: VpnSettings | None = None
    entries: tuple[str, ...] = field(default=(), repr=False)
    server_root: bytes | None = field(default=None, repr=False)

    @property
    def has_profile(self) -> bool:
        return self.profile_text is not None

    @functools.cached_property
    def profile_sha256(self) -> str | None:
        if self.profile_text is None:
            return None
        return hashlib.sha256(self.profile_text.encode("utf-8")).hexdigest()

    @property
    def content_sha256(self) -> str:
        """A digest of everything targets read: the profile, VpnSettings.xml's values, the
        server root (for the batch's unchanged test)."""
        digest = hashlib.sha256()
        digest.update((self.profile_text or "").encode("utf-8") + b"\0")
        if self.vpn_settings is not None:
            settings = self.vpn_settings
            text = f"{settings.server}\0{settings.vpn_type}\0{','.join(settings.routes)}"
            digest.update(text.encode("utf-8"))
        digest.update(b"\0" + (self.server_root or b""))
        return digest.hexdigest()

    def require_profile(self, target: str) -> None:
        """PackageError when ``target`` needs the OpenVPN profile and the package has none."""
        if self.profile_text is None:
            raise PackageError(
                f"{self.source}: the package has no OpenVPN/vpnconfig.ovpn (only Generic/), so "
                f"the {target} target cannot be made; only the ikev2 target works with it",
                hint=NO_OPENVPN_HINT,
            )

    def require_vpn_settings(self, target: str) -> VpnSettings:
        """The IKEv2 settings; PackageError when the package has no Generic/VpnSettings.xml."""
        settings = self.vpn_settings
        if settings is None:
            raise PackageError(
                f"{self.source}: no Generic/VpnSettings.xml in the package, which the {target} "
                "target needs (it names the gateway's IKEv2 server)",
                hint=NO_GENERIC_HINT,
            )
        if not settings.server:
            raise PackageError(
                f"{self.source}: Generic/VpnSettings.xml names no VpnServer",
                hint="download the VPN client package from the gateway again",
            )
        return settings

    def profile(self) -> Profile:
        """A fresh, editable copy of the template (parsed once per package, then cloned;
        PackageError when the package has no OpenVPN profile)."""
        if self.profile_text is None:
            self.require_profile("requested")
        return self._template.clone()

    @functools.cached_property
    def _template(self) -> Profile:
        return Profile.parse(self.profile_text or "", self.source_label)

    @property
    def source_label(self) -> str:
        if self.kind == "ovpn" or self.profile_entry is None:
            return self.source
        return f"{self.source}:{self.profile_entry}"


def _safe_parts(name: str) -> tuple[str, ...] | None:
    """Normalise an archive entry name; None for absolute paths, drive letters or ``..``."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return None
    parts = tuple(p for p in PurePosixPath(posix).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    """A Unix symbolic link stored in the zip (mode S_IFLNK in the external attributes)."""
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def check_output_location(package: AzurePackage, output: Path) -> None:
    """Refuse an output folder inside an extracted package folder: the profiles (with keys)
    would mix with Azure's files, and the next load could find them."""
    if package.kind != "folder":
        return
    source = Path(package.source).resolve()
    target = output.resolve()
    if target == source or source in target.parents:
        raise UsageError(
            f"{output}: the output folder is inside the package folder {package.source}",
            hint="write the profiles elsewhere, e.g. --output profiles next to the package",
        )


def _matches(parts: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """``wanted`` at the top, or nested under exactly one top folder (a re-zipped download)."""
    lowered = tuple(p.lower() for p in parts)
    return lowered == wanted or (len(lowered) == len(wanted) + 1 and lowered[1:] == wanted)


def _check_profile(text: str, label: str) -> None:
    try:
        profile = Profile.parse(text, label)
    except ProfileError as exc:
        raise PackageError(exc.message, exc.hint) from exc
    for name in REQUIRED_BLOCKS:
        if profile.block(name) is None:
            if name in ("cert", "key"):
                raise PackageError(
                    f"{label}: no <{name}> block to fill",
                    hint="this is not an Azure P2S certificate-authentication profile; download "
                    "the package for a gateway that uses Azure certificate authentication",
                )
            raise PackageError(
                f"{label}: missing <{name}> block",
                hint="the profile is incomplete or was edited; download the VPN client package "
                "from the gateway again",
            )
    for name in (*REQUIRED_BLOCKS, "tls-crypt"):
        repeated = list(profile.blocks(name))
        if len(repeated) > 1:
            raise PackageError(
                f"{label} line {repeated[1].line}: a second <{name}> block "
                f"(the first is at line {repeated[0].line})",
                hint="the profile was edited by hand; keep one block, or download the VPN client "
                "package from the gateway again",
            )
    if profile.first("client") is None and profile.first("tls-client") is None:
        raise PackageError(
            f"{label}: no 'client' directive",
            hint="this looks like a server configuration, not an Azure P2S client profile; "
            "download the VPN client package from the gateway again",
        )
    if profile.first("remote") is None and profile.block("connection") is None:
        raise PackageError(
            f"{label}: no 'remote' directive (the gateway's address)",
            hint="the profile is incomplete or was edited; download the VPN client package "
            "from the gateway again",
        )
    dev = profile.first("dev")
    if dev is not None and dev.args and not dev.args[0].startswith("tun"):
        raise PackageError(
            f"{label} line {dev.line}: 'dev {dev.args[0]}': Azure P2S gateways use 'dev tun'",
            hint="this is not an Azure P2S profile (TAP mode is not supported by the gateway "
            "or by OpenVPN Connect); download the VPN client package from the gateway again",
        )
    problems = content_problems(profile)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise PackageError(f"{label} line {first.line}: {first.message}{more}", hint=COPIED_HINT)
    foreign = foreign_placeholders(profile)
    if foreign:
        line, token = foreign[0]
        raise PackageError(
            f"{label} line {line}: {FOREIGN_MESSAGE.format(token=token)}", FOREIGN_HINT
        )


def parse_vpn_settings(data: bytes, label: str) -> VpnSettings:
    """Parse VpnSettings.xml with expat, refusing any DTD or entity declaration."""
    if len(data) > MAX_XML_BYTES:
        raise PackageError(f"{label}: larger than {MAX_XML_BYTES} bytes", hint="not an Azure file")
    parser = expat.ParserCreate()
    stack: list[str] = []
    values: dict[str, str] = {}

    def refuse(*_: object) -> None:
        raise PackageError(
            f"{label}: contains a DTD or entity declaration",
            hint="Azure never writes these; the package may have been tampered with",
        )

    def start(name: str, _attrs: dict[str, str]) -> None:
        stack.append(name)

    def end(_name: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if len(stack) == 2 and stack[0] == "VpnProfile":
            values[stack[1]] = values.get(stack[1], "") + text

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise PackageError(
            f"{label}: not well-formed XML ({exc})", hint="download the package again"
        ) from exc
    routes = tuple(r.strip() for r in values.get("Routes", "").split(",") if r.strip())
    server = values.get("VpnServer", "").strip() or None
    vpn_type = values.get("VpnType", "").strip() or None
    return VpnSettings(server=server, vpn_type=vpn_type, routes=routes)


def _decode_profile(data: bytes, label: str) -> str:
    try:
        return normalize_text(data, label)
    except ProfileError as exc:
        raise PackageError(exc.message, exc.hint) from exc


def _too_large(label: str, size: int) -> PackageError:
    return PackageError(
        f"{label}: profile is {size} bytes, over the {MAX_PROFILE_BYTES}-byte limit",
        hint="an Azure vpnconfig.ovpn is a few KiB; check that this is the right file",
    )


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, label: str) -> bytes:
    """One entry, at most ``limit`` bytes (PackageError when larger or unreadable)."""
    if info.file_size > limit:
        raise PackageError(f"{label}: larger than {limit} bytes", hint="not an Azure file")
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise PackageError(
            f"{label}: cannot be read ({type(exc).__name__})",
            hint="the zip is corrupt or encrypted: download again",
        ) from exc
    if len(data) > limit:
        raise PackageError(f"{label}: larger than {limit} bytes", hint="not an Azure file")
    return data


def _no_profile_error(label: str, has: str, where: str = "package") -> PackageError:
    return PackageError(
        f"{label}: no OpenVPN/vpnconfig.ovpn in the {where} and no Generic/VpnSettings.xml "
        f"(it has: {has})",
        hint=NO_OPENVPN_HINT,
    )


def _load_zip(path: Path) -> AzurePackage:
    label = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PackageError(
            f"{label}: not a zip file or the zip is corrupt",
            hint="download the VPN client package from the Azure portal again",
        ) from exc
    with archive:
        infos = archive.infolist()
        declared = sum(info.file_size for info in infos)
        if declared > MAX_ARCHIVE_BYTES:
            raise PackageError(
                f"{label}: declares {declared} uncompressed bytes, over the "
                f"{MAX_ARCHIVE_BYTES}-byte limit",
                hint="an Azure package is well under 10 MiB; this looks like a zip bomb",
            )
        usable: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
        for info in infos:
            parts = _safe_parts(info.filename)
            if parts and not info.is_dir():
                if _is_symlink(info):
                    if _matches(parts, PROFILE_PATH):
                        raise PackageError(
                            f"{label}: {info.filename} is a symbolic link, not a file",
                            hint="Azure's packages hold plain files; download the VPN client "
                            "package from the portal again",
                        )
                    continue
                usable.append((parts, info))
        entries = tuple("/".join(p) for p, _ in usable)
        profiles = [(p, i) for p, i in usable if _matches(p, PROFILE_PATH)]
        if not profiles:
            # an OpenVPN folder with a differently named .ovpn is still Azure's profile
            profiles = [
                (p, i)
                for p, i in usable
                if len(p) in (2, 3)
                and p[-2].lower() == "openvpn"
                and p[-1].lower().endswith(".ovpn")
            ]
        if len(profiles) > 1:
            names = ", ".join("/".join(p) for p, _ in profiles)
            raise PackageError(
                f"{label}: more than one OpenVPN profile ({names})",
                hint="pass the extracted .ovpn you want instead of the zip",
            )
        depth = len(profiles[0][0]) if profiles else None

        def find(wanted: tuple[str, ...]) -> tuple[tuple[str, ...], zipfile.ZipInfo] | None:
            # beside the profile when there is one (same top folder depth)
            return next(
                (
                    (p, i)
                    for p, i in usable
                    if _matches(p, wanted) and (depth is None or len(p) == depth)
                ),
                None,
            )

        settings_entry = find(SETTINGS_PATH)
        if not profiles and settings_entry is None:
            tops = sorted({p[0] for p, _ in usable})
            if any(_matches(p, SERVER_ROOT_PATH) for p, _ in usable) or any(
                t.lower() == "generic" for t in tops
            ):
                raise PackageError(
                    f"{label}: Generic/ has no VpnSettings.xml and there is no "
                    "OpenVPN/vpnconfig.ovpn",
                    hint="download the VPN client package from the gateway again",
                )
            raise _no_profile_error(label, ", ".join(t + "/" for t in tops[:6]) or "nothing usable")
        text: str | None = None
        entry: str | None = None
        if profiles:
            parts, info = profiles[0]
            entry = "/".join(parts)
            if info.file_size > MAX_PROFILE_BYTES:
                raise _too_large(f"{label}:{entry}", info.file_size)
            data = _read_entry(archive, info, MAX_PROFILE_BYTES, f"{label}:{entry}")
            text = _decode_profile(data, f"{label}:{entry}")
        settings = None
        if settings_entry is not None:
            where = f"{label}:{'/'.join(settings_entry[0])}"
            settings = parse_vpn_settings(
                _read_entry(archive, settings_entry[1], MAX_XML_BYTES, where), where
            )
        root_entry = find(SERVER_ROOT_PATH)
        server_root = None
        if root_entry is not None:
            where = f"{label}:{'/'.join(root_entry[0])}"
            server_root = _read_entry(archive, root_entry[1], MAX_CERT_BYTES, where)
    if text is not None and entry is not None:
        _check_profile(text, f"{label}:{entry}")
    return AzurePackage(label, "zip", entry, text, settings, entries, server_root)


def _find_in_folder(root: Path, wanted: tuple[str, ...]) -> Path | None:
    """Case-insensitive lookup of ``wanted`` at the top of ``root`` or one folder down."""

    def walk(base: Path, parts: tuple[str, ...]) -> Path | None:
        current = base
        for part in parts:
            try:
                match = next(
                    (c for c in current.iterdir() if c.name.lower() == part and not c.is_symlink()),
                    None,
                )
            except OSError:
                return None
            if match is None:
                return None
            current = match
        return current if current.is_file() else None

    found = walk(root, wanted)
    if found:
        return found
    try:
        subdirs = sorted(c for c in root.iterdir() if c.is_dir() and not c.is_symlink())
    except OSError as exc:
        raise PackageError(f"{root}: cannot list the folder ({exc.strerror})") from exc
    for sub in subdirs:
        found = walk(sub, wanted)
        if found:
            return found
    return None


def _read_file(path: Path, limit: int, label: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise _too_large(label, size)
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise PackageError(f"{label}: cannot be read ({exc.strerror})") from exc
    if len(data) > limit:
        raise _too_large(label, len(data))
    return data


def _load_folder(path: Path) -> AzurePackage:
    profile_path = _find_in_folder(path, PROFILE_PATH)
    base = profile_path.parent.parent if profile_path is not None else path
    settings_path = _find_in_folder(base, SETTINGS_PATH)
    if profile_path is None and settings_path is None:
        tops = sorted(c.name + "/" for c in path.iterdir() if c.is_dir())
        raise _no_profile_error(str(path), ", ".join(tops[:6]) or "no folders", "folder")
    text: str | None = None
    entry: str | None = None
    if profile_path is not None:
        label = str(profile_path)
        text = _decode_profile(_read_file(profile_path, MAX_PROFILE_BYTES, label), label)
        _check_profile(text, label)
        entry = profile_path.relative_to(path).as_posix()
    settings = None
    server_root = None
    if settings_path is not None:
        raw = _read_file(settings_path, MAX_XML_BYTES, str(settings_path))
        settings = parse_vpn_settings(raw, str(settings_path))
        root_path = _find_in_folder(settings_path.parent.parent, SERVER_ROOT_PATH)
        if root_path is not None:
            server_root = _read_file(root_path, MAX_CERT_BYTES, str(root_path))
    return AzurePackage(str(path), "folder", entry, text, settings, server_root=server_root)


def load_package(path: Path) -> AzurePackage:
    """Load the P2S package at ``path`` (zip, extracted folder or bare .ovpn) and check it."""
    if not path.exists():
        raise PackageError(
            f"{path}: no such file or folder",
            hint="pass the zip downloaded from the gateway's 'Point-to-site configuration' page",
        )
    if path.is_dir():
        return _load_folder(path)
    if path.suffix.lower() in (".ovpn", ".conf") and not zipfile.is_zipfile(path):
        label = str(path)
        text = _decode_profile(_read_file(path, MAX_PROFILE_BYTES, label), label)
        _check_profile(text, label)
        return AzurePackage(label, "ovpn", path.name, text)
    return _load_zip(path)
