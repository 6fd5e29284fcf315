"""`ovpn-toolkit demo`: the batch flow end to end on built-in, synthetic material.

It builds a synthetic Azure-like package, a P2S certificate authority, a ``users.yaml`` with a
few users (one with an existing PEM pair, one with a PFX, the rest issued by the batch), runs
the batch and returns what it did. Everything made here is labelled DEMO material; none of it
can reach a real gateway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from toolkit import ca
from toolkit.batch import BatchResult, BatchSettings, load_user_list, run_batch
from toolkit.errors import OutputError
from toolkit.output import atomic_write, ensure_private_dir, remove_tree
from toolkit.sample import make_gateway

DEMO_NOTE = """\
This folder was made by `ovpn-toolkit demo`. Everything in it is DEMO material:
- DEMO-VNet1GW.zip is a synthetic stand-in for an Azure P2S client package. Its <ca> holds a
  stand-in public root (not DigiCert) and a freshly generated tls-auth key; its gateway host
  does not exist.
- pki/ is a throwaway P2S certificate authority; secrets/ holds its demo passphrases.
- users.yaml is the user list; run it again with
  `ovpn-toolkit batch users.yaml` and nothing changes (idempotent).
Delete the folder when you are done. Never upload the demo root to a real gateway.
"""

USERS_YAML = """\
# ovpn-toolkit batch user list (DEMO). Reference: docs/reference/users-yaml.md
package: DEMO-VNet1GW.zip
output: profiles
targets: [tunnelblick, ios]
roots: [pki/root.pem]
contact: Contoso IT desk, it@contoso.example (DEMO)
ca: {dir: pki, passphrase_file: secrets/ca.pass}
defaults: {days: 365, key_type: rsa2048, warn_days: 30}
users:
  - name: alice
    display_name: Alice (Contoso VPN)
    cert: certs/alice.pem
    key: certs/alice.key
  - name: bob
    pfx: certs/bob.pfx
    passphrase_file: secrets/bob.pass
  - name: carol
    email: carol@contoso.example
    targets: [ios]
  - name: dave
    email: dave@contoso.example
    targets: [tunnelblick, ios, openvpn]
"""


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    package: Path
    users_file: Path
    output: Path
    batch: BatchResult


def run_demo(folder: Path, *, force: bool = False, jobs: int | None = None) -> DemoResult:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        raise OutputError(
            f"{folder}: already exists and is not empty",
            hint="pass --force to replace the demo there, or choose another --output",
        )
    if folder.exists() and force:
        if not (folder / "DEMO-README.txt").exists() and any(folder.iterdir()):
            raise OutputError(
                f"{folder}: is not a folder made by 'ovpn-toolkit demo'; refusing to replace it",
                hint="choose another --output",
            )
        remove_tree(folder)
    ensure_private_dir(folder)
    atomic_write(folder / "DEMO-README.txt", DEMO_NOTE.encode())
    package = folder / "DEMO-VNet1GW.zip"
    atomic_write(package, make_gateway().zip_bytes())
    ca_pass = secrets.token_urlsafe(18).encode()
    bob_pass = secrets.token_urlsafe(12).encode()
    atomic_write(folder / "secrets" / "ca.pass", ca_pass + b"\n")
    atomic_write(folder / "secrets" / "bob.pass", bob_pass + b"\n")
    ca.init_ca(folder / "pki", "DEMO Contoso P2S Root (throwaway)", passphrase=ca_pass)
    authority = ca.open_ca(folder / "pki", ca_pass)
    # users who already hold credentials: a PEM pair and a Windows-style PFX
    authority.issue("alice", email="alice@contoso.example", output_dir=folder / "certs")
    authority.issue(
        "bob", email="bob@contoso.example", output_dir=folder / "certs", pfx_password=bob_pass
    )
    users_file = folder / "users.yaml"
    atomic_write(users_file, USERS_YAML.encode())
    users = load_user_list(users_file)
    assert users.output is not None  # noqa: S101 - set in USERS_YAML
    settings = BatchSettings(
        package_path=users.package,
        output=users.output,
        roots=users.roots,
        ca=users.ca,
        warn_days=users.warn_days,
    )
    result = run_batch(users, settings, jobs=jobs)
    return DemoResult(folder, package, users_file, users.output, result)
