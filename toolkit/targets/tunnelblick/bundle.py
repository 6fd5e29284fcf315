"""Read and check a Tunnelblick bundle (``Name.tblk`` folder or ``Name.tblk.zip``) the way
Tunnelblick validates it at install time, for ``ovpn-toolkit check``."""

from __future__ import annotations

import plistlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from toolkit.errors import ProfileError
from toolkit.findings import Finding
from toolkit.targets.tunnelblick.options import TUNNELBLICK_FORBIDDEN

MAX_FILE_BYTES = 10 * 1024 * 1024
ALLOWED_EXTENSIONS = frozenset(
    [
        "cer",
        "cert",
        "crt",
        "der",
        "key",
        "p12",
        "p7b",
        "p7c",
        "pem",
        "crl",
        "pfx",
        "sh",
        "lproj",
        "unknown",
        "ovpn",
        "conf",
    ]
)
PLIST_KEYS = frozenset(
    {
        "CFBundleIdentifier",
        "CFBundleVersion",
        "CFBundleShortVersionString",
        "TBPackageVersion",
        "TBReplaceIdentical",
        "TBSharePackage",
        "TBKeepExistingFilesList",
        "TBMinimumTunnelblickVersion",
        "TBMaximumTunnelblickVersion",
        "TBUninstall",
        "TBConfigurationUpdateURL",
    }
)
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9.-]+$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass
class Bundle:
    name: str
    files: dict[str, bytes] = field(repr=False)  # path inside the bundle -> content

    @property
    def config(self) -> bytes | None:
        return self.files.get("Contents/Resources/config.ovpn")


def read_bundle(path: Path) -> Bundle:
    """A ``.tblk`` folder or a zip whose single top entry is ``Name.tblk/``."""
    if path.is_dir():
        files = {}
        for item in sorted(path.rglob("*")):
            if item.is_file():
                if item.stat().st_size > MAX_FILE_BYTES:
                    raise ProfileError(f"{item}: over Tunnelblick's 10 MiB file limit")
                files[item.relative_to(path).as_posix()] = item.read_bytes()
        return Bundle(path.name, files)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProfileError(
            f"{path}: not a zip file", hint="pass a .tblk folder or .tblk.zip"
        ) from exc
    with archive:
        tops = {PurePosixPath(i.filename.replace("\\", "/")).parts[0] for i in archive.infolist()}
        if len(tops) != 1:
            raise ProfileError(
                f"{path}: the zip must hold exactly one top folder Name.tblk/ (has {len(tops)})",
                hint="zip the .tblk folder itself",
            )
        top = tops.pop()
        files = {}
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_FILE_BYTES:
                raise ProfileError(f"{path}:{info.filename}: over Tunnelblick's 10 MiB file limit")
            inner = info.filename.replace("\\", "/").split("/", 1)
            if len(inner) == 2 and inner[1]:
                files[inner[1]] = archive.read(info)
    return Bundle(top, files)


def check_bundle(bundle: Bundle) -> list[Finding]:
    findings: list[Finding] = []

    def error(code: str, message: str, hint: str | None = None) -> None:
        findings.append(Finding("error", code, message, hint))

    if not bundle.name.endswith(".tblk"):
        error("bundle-name", f"'{bundle.name}' does not end in .tblk")
    for name in [bundle.name, *bundle.files]:
        bad = sorted(set(name) & (TUNNELBLICK_FORBIDDEN - {"/"}))
        if bad or ".." in name or any(part.startswith(".") for part in name.split("/")):
            error("bundle-path", f"'{name}': Path contains characters that are not allowed")
    if bundle.config is None:
        error("no-config", "no Contents/Resources/config.ovpn in the bundle")
    for name in bundle.files:
        suffix = name.rsplit(".", 1)[-1].lower() if "." in name.rsplit("/", 1)[-1] else ""
        if name != "Contents/Info.plist" and suffix not in ALLOWED_EXTENSIONS:
            error(
                "unknown-extension", f"'{name}': Unknown extension; Tunnelblick aborts the install"
            )
    plist_data = bundle.files.get("Contents/Info.plist")
    if plist_data is not None:
        findings.extend(check_info_plist(plist_data))
    return findings


def check_info_plist(data: bytes) -> list[Finding]:
    findings: list[Finding] = []
    try:
        plist = plistlib.loads(data)
    except Exception as exc:  # plistlib raises several types for broken input
        return [Finding("error", "plist", f"Info.plist cannot be parsed ({type(exc).__name__})")]
    if not isinstance(plist, dict):
        return [Finding("error", "plist", "Info.plist is not a dictionary")]
    for key, _value in plist.items():
        if key.startswith(("TBPreference", "TBAlwaysSetPreference")):
            continue
        if key not in PLIST_KEYS:
            findings.append(Finding("error", "plist-key", f"Info.plist: Unknown key '{key}'"))
    if plist.get("TBPackageVersion") != "1":
        findings.append(
            Finding("error", "plist-version", "Info.plist: TBPackageVersion must be the string '1'")
        )
    bundle_id = plist.get("CFBundleIdentifier")
    if bundle_id is not None and (
        not isinstance(bundle_id, str)
        or not _BUNDLE_ID.match(bundle_id)
        or ".." in bundle_id
        or bundle_id.startswith(".")
        or bundle_id.endswith(".")
    ):
        findings.append(Finding("error", "plist-id", "Info.plist: invalid CFBundleIdentifier"))
    version = plist.get("CFBundleVersion")
    if version is not None and (not isinstance(version, str) or not _VERSION.match(version)):
        findings.append(
            Finding("error", "plist-version", "Info.plist: CFBundleVersion must be digits and dots")
        )
    replace = plist.get("TBReplaceIdentical")
    if replace is not None and replace not in ("ask", "yes", "no", "force"):
        findings.append(Finding("error", "plist-replace", "Info.plist: bad TBReplaceIdentical"))
    return findings
