"""`ovpn-toolkit demo`: a synthetic Azure-like package, a throwaway P2S PKI, real outputs.

Everything made here is labelled DEMO material; none of it can reach a real gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit import pki
from toolkit.credentials import load_pem_credentials, load_roots
from toolkit.errors import OutputError
from toolkit.fsutil import atomic_write, ensure_private_dir
from toolkit.generate import UserPlan, UserRequest, plan_user
from toolkit.package import load_package
from toolkit.passphrase import PassphraseSource
from toolkit.sample import make_gateway
from toolkit.writer import WrittenFile, write_plans

DEMO_NOTE = """\
This folder was made by `ovpn-toolkit demo`. Everything in it is DEMO material:
- DEMO-VNet1GW.zip is a synthetic stand-in for an Azure P2S client package. Its <ca> holds a
  stand-in public root (not DigiCert) and a freshly generated tls-auth key; its gateway host
  does not exist.
- pki/ holds a throwaway P2S root and one client certificate with their keys.
Delete the folder when you are done. Never upload the demo root to a real gateway.
"""


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    package: Path
    root_cert: Path
    plan: UserPlan
    written: list[WrittenFile]


def run_demo(folder: Path, *, force: bool = False, user: str = "alice") -> DemoResult:
    if folder.exists() and any(folder.iterdir()) and not force:
        raise OutputError(
            f"{folder}: already exists and is not empty",
            hint="pass --force to replace the demo there, or choose another --output",
        )
    ensure_private_dir(folder)
    gateway = make_gateway()
    package_path = folder / "DEMO-VNet1GW.zip"
    atomic_write(package_path, gateway.zip_bytes())
    atomic_write(folder / "DEMO-README.txt", DEMO_NOTE.encode())
    root = pki.create_root("DEMO P2S Root (throwaway)")
    client = pki.issue_certificate(root, f"{user}@demo.invalid", email=f"{user}@demo.invalid")
    pki_dir = folder / "pki"
    atomic_write(pki_dir / "demo-root.pem", root.cert_pem)
    atomic_write(pki_dir / "demo-root.key", root.key_pem())
    atomic_write(pki_dir / f"{user}.pem", client.cert_pem)
    atomic_write(pki_dir / f"{user}.key", client.key_pem())
    package = load_package(package_path)
    creds = load_pem_credentials(
        pki_dir / f"{user}.pem", pki_dir / f"{user}.key", PassphraseSource()
    )
    plan = plan_user(
        package,
        creds,
        UserRequest(name=user, targets=("tunnelblick", "ios", "openvpn")),
        roots=load_roots([pki_dir / "demo-root.pem"]),
    )
    written = write_plans(folder / "profiles", user, plan.targets, force=force)
    return DemoResult(folder, package_path, pki_dir / "demo-root.pem", plan, written)
