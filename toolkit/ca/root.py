"""Create a CA folder (``ca init``) and read its root: ``ca.json``, ``root.pem``, ``root.key``."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from toolkit.ca import keys
from toolkit.ca.azure import AzureCommands, azure_resource_name, root_upload_commands
from toolkit.ca.keys import KeyType
from toolkit.ca.ledger import (
    CA_FORMAT,
    FORMAT_VERSION,
    LEDGER_FORMAT,
    CAPaths,
    _iso,
    _not_a_ca,
    _parse_iso,
    _require_ca_folder,
    _utc,
)
from toolkit.ca.rules import check_azure_name, check_cn, check_days, check_key_type
from toolkit.errors import CAError, CredentialsError, OutputError, UsageError
from toolkit.output import FILE_MODE, PUBLIC_MODE, ensure_private_dir, make_private, write_all

DEFAULT_ROOT_CN = "P2S Root CA"
DEFAULT_ROOT_DAYS = 3650
BACKDATE = dt.timedelta(minutes=5)  # tolerate clients whose clock is slightly behind


@dataclass(frozen=True)
class CAInfo:
    """The contents of ``ca.json``."""

    cn: str
    azure_name: str
    key_type: KeyType
    key_encrypted: bool
    thumbprint_sha1: str
    not_before: dt.datetime
    not_after: dt.datetime
    created: dt.datetime
    # the gateway the root is uploaded to (`ca init --gateway --resource-group`): every later
    # command's printed Azure commands use them unless told otherwise
    gateway: str | None = None
    resource_group: str | None = None

    def azure_target(
        self, gateway: str | None = None, resource_group: str | None = None
    ) -> tuple[str | None, str | None]:
        """The gateway and resource group for Azure commands: the options win over ca.json."""
        return gateway or self.gateway, resource_group or self.resource_group

    def to_json(self) -> dict[str, Any]:
        azure = {"gateway": self.gateway, "resource_group": self.resource_group}
        return {
            "format": CA_FORMAT,
            "version": FORMAT_VERSION,
            "cn": self.cn,
            "azure_name": self.azure_name,
            "key_type": self.key_type,
            "key_encrypted": self.key_encrypted,
            "thumbprint_sha1": self.thumbprint_sha1,
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "created": _iso(self.created),
            "azure": {k: v for k, v in azure.items() if v},
            "files": {
                "key": "root.key",
                "cert_pem": "root.pem",
                "cert_der": "root.cer",
                "public_cert_data": "root-public-cert-data.txt",
                "ledger": "ledger.json",
            },
        }


def _read_info(paths: CAPaths) -> CAInfo:
    _require_ca_folder(paths)
    try:
        document = json.loads(paths.metadata.read_text("utf-8"))
    except OSError as exc:
        raise CAError(f"{paths.metadata}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CAError(
            f"{paths.metadata}: not valid JSON", hint="restore ca.json from a backup"
        ) from exc
    if not isinstance(document, dict) or document.get("format") != CA_FORMAT:
        raise _not_a_ca(paths.directory)
    if document.get("version") != FORMAT_VERSION:
        raise CAError(f"{paths.metadata}: CA format version {document.get('version')!r} unknown")
    try:
        info = CAInfo(
            cn=str(document["cn"]),
            azure_name=str(document["azure_name"]),
            key_type=check_key_type(str(document["key_type"])),
            key_encrypted=bool(document["key_encrypted"]),
            thumbprint_sha1=str(document["thumbprint_sha1"]),
            not_before=_parse_iso(document["not_before"]),
            not_after=_parse_iso(document["not_after"]),
            created=_parse_iso(document["created"]),
        )
    except (KeyError, TypeError, ValueError, UsageError) as exc:
        raise CAError(f"{paths.metadata}: malformed ({exc})") from exc
    azure = document.get("azure") or {}  # absent in CA folders made before 0.2
    if not isinstance(azure, dict):
        raise CAError(f"{paths.metadata}: malformed ('azure' is not an object)")
    return replace(
        info,
        gateway=_text_or_none(azure.get("gateway")),
        resource_group=_text_or_none(azure.get("resource_group")),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _read_root_certificate(paths: CAPaths) -> x509.Certificate:
    try:
        data = paths.root_pem.read_bytes()
    except OSError as exc:
        raise CAError(
            f"{paths.root_pem}: cannot read the root certificate ({exc.strerror})",
            hint="restore root.pem into the CA folder",
        ) from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CAError(f"{paths.root_pem}: not a PEM certificate") from exc


@dataclass(frozen=True)
class CAInitResult:
    directory: Path
    certificate: x509.Certificate
    info: CAInfo
    files: tuple[Path, ...]

    @property
    def paths(self) -> CAPaths:
        return CAPaths(self.directory)

    @property
    def thumbprint_sha1(self) -> str:
        return self.info.thumbprint_sha1

    @property
    def public_cert_data(self) -> str:
        return keys.azure_public_cert_data(self.certificate)

    def upload_commands(
        self, *, gateway: str | None = None, resource_group: str | None = None
    ) -> AzureCommands:
        gateway, resource_group = self.info.azure_target(gateway, resource_group)
        return root_upload_commands(
            self.certificate,
            self.paths.root_cer,
            self.info.azure_name,
            gateway=gateway,
            resource_group=resource_group,
        )


def _existing_ca_files(paths: CAPaths) -> list[Path]:
    candidates = (
        paths.metadata, paths.root_key, paths.root_pem, paths.root_cer, paths.ledger, paths.journal
    )  # fmt: skip
    return [p for p in candidates if p.exists()]


def init_ca(
    directory: Path,
    cn: str = DEFAULT_ROOT_CN,
    *,
    days: int = DEFAULT_ROOT_DAYS,
    key_type: str = "rsa2048",
    passphrase: bytes | None,
    now: dt.datetime | None = None,
    gateway: str | None = None,
    resource_group: str | None = None,
) -> CAInitResult:
    """Create a new P2S root CA in ``directory`` (made 0700). ``passphrase=None`` leaves the
    key unencrypted: callers must ask for that explicitly. Never overwrites an existing CA.
    ``gateway`` and ``resource_group`` are remembered in ca.json for the Azure commands."""
    directory = Path(directory)
    check_azure_name(gateway, "--gateway")
    check_azure_name(resource_group, "--resource-group")
    paths = CAPaths(directory)
    cn = check_cn(cn)
    days = check_days(days)
    key_type = check_key_type(key_type)
    if passphrase is not None and not passphrase:
        raise CredentialsError("the passphrase for the CA key is empty")
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory} exists and is not a folder", hint="choose another --output")
    existing = _existing_ca_files(paths)
    if existing:
        raise OutputError(
            f"{directory} already holds a CA ({existing[0].name} exists)",
            hint="a CA is never overwritten: choose another --output folder",
        )
    ensure_private_dir(directory)
    make_private(directory)

    moment = _utc(now or keys.utcnow())
    root = keys.create_root(cn, days=days, key_type=key_type, not_before=moment - BACKDATE)
    cert = root.certificate
    info = CAInfo(
        cn=cn,
        azure_name=azure_resource_name(cn),
        key_type=key_type,
        key_encrypted=passphrase is not None,
        thumbprint_sha1=keys.thumbprint_sha1(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        created=moment,
        gateway=check_azure_name(gateway, "--gateway"),
        resource_group=check_azure_name(resource_group, "--resource-group"),
    )
    empty_ledger = {
        "format": LEDGER_FORMAT,
        "version": FORMAT_VERSION,
        "updated": _iso(moment),
        "certificates": [],
    }
    files: list[tuple[Path, bytes, int]] = [
        (paths.root_key, root.key_pem(passphrase), FILE_MODE),
        (paths.root_pem, root.cert_pem, PUBLIC_MODE),
        (paths.root_cer, root.cert_der, PUBLIC_MODE),
        (paths.public_cert_data, (keys.azure_public_cert_data(cert) + "\n").encode(), PUBLIC_MODE),
        (paths.ledger, (json.dumps(empty_ledger, indent=2) + "\n").encode(), PUBLIC_MODE),
        # written last: a folder without ca.json is not a CA, even if a write failed midway
        (paths.metadata, (json.dumps(info.to_json(), indent=2) + "\n").encode(), PUBLIC_MODE),
    ]
    write_all(files)
    return CAInitResult(directory, cert, info, tuple(path for path, _, _ in files))
