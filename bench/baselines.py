"""The baselines: the admin's shell loop, easy-rsa, and the key-generation floor."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path

from bench.inputs import UserCredential, generate_rsa2048_pem

EASYRSA = Path("/usr/share/easy-rsa/easyrsa")

# The manual method from Microsoft's how-to, scripted the way an admin would: look at the
# certificate with openssl (subject, expiry; refuse an expired one), fill the two placeholders
# of vpnconfig.ovpn with awk and drop the `log` line, one file per target (two per user).
# One openssl and two awk processes per user; the loop itself is bash.
SHELL_LOOP = r"""#!/usr/bin/env bash
# usage: manual.sh VPNCONFIG.OVPN USERS.TSV OUTPUT   (USERS.TSV: name<TAB>cert<TAB>key)
set -euo pipefail
umask 077
template=$1
users=$2
out=$3
mkdir -p "$out"
fill='
  $0 == "$CLIENTCERTIFICATE" { while ((getline l < cert) > 0) print l; close(cert); next }
  $0 == "$PRIVATEKEY"        { while ((getline l < key) > 0) print l; close(key); next }
  $1 == "log"                { next }
                             { print }
'
while IFS=$'\t' read -r name cert key; do
  info=$(openssl x509 -in "$cert" -noout -subject -enddate -checkend 0)
  mkdir -p "$out/$name/tunnelblick" "$out/$name/ios"
  awk -v cert="$cert" -v key="$key" "$fill" "$template" > "$out/$name/tunnelblick/$name.ovpn"
  awk -v cert="$cert" -v key="$key" "$fill" "$template" > "$out/$name/ios/$name.ovpn"
  printf '%s\t%s\n' "$name" "${info//$'\n'/; }" >> "$out/certificates.tsv"
done < "$users"
"""

# easy-rsa's per-user issuance, one user after the other, as its documentation shows.
EASYRSA_LOOP = r"""#!/usr/bin/env bash
# usage: easyrsa-loop.sh EASYRSA COUNT   (EASYRSA_PKI and EASYRSA_BATCH in the environment)
set -euo pipefail
easyrsa=$1
count=$2
for ((i = 0; i < count; i++)); do
  printf -v name 'user%05d' "$i"
  "$easyrsa" build-client-full "$name" nopass > /dev/null 2>&1
done
"""


def write_shell_loop(folder: Path, users: Sequence[UserCredential]) -> tuple[Path, Path]:
    """The script and its TSV user list (absolute paths) for ``users``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "manual.sh"
    script.write_text(SHELL_LOOP, encoding="utf-8")
    table = folder / f"users-{len(users)}.tsv"
    table.write_text(
        "".join(f"{u.name}\t{u.cert.resolve()}\t{u.key.resolve()}\n" for u in users),
        encoding="utf-8",
    )
    return script, table


def check_shell_output(output: Path, users: Sequence[UserCredential]) -> str | None:
    """None when every user has both filled files; else what is wrong (the first problem)."""
    for user in users:
        for target in ("tunnelblick", "ios"):
            path = output / user.name / target / f"{user.name}.ovpn"
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                return f"{path}: {exc.strerror}"
            if "$CLIENTCERTIFICATE" in text or "$PRIVATEKEY" in text:
                return f"{path}: a placeholder remains"
            if "BEGIN CERTIFICATE" not in text or "PRIVATE KEY-----" not in text:
                return f"{path}: certificate or key missing"
            if any(line.split()[:1] == ["log"] for line in text.splitlines()):
                return f"{path}: the log line remains"
    return None


def write_easyrsa_loop(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "easyrsa-loop.sh"
    script.write_text(EASYRSA_LOOP, encoding="utf-8")
    return script


def easyrsa_env(pki: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "EASYRSA_PKI": str(pki),
            "EASYRSA_BATCH": "1",
            "EASYRSA_REQ_CN": "BENCH easy-rsa root (synthetic)",
            "EASYRSA_ALGO": "rsa",
            "EASYRSA_KEY_SIZE": "2048",
            "EASYRSA_DIGEST": "sha256",
        }
    )
    return env


def keygen_floor(count: int, processes: int) -> float:
    """Seconds to generate ``count`` RSA-2048 keys on a pool of ``processes``, pool included.

    Runs inside the benchmark's (already started) interpreter: no interpreter start-up, no
    import, no certificate, no file: the least any tool needs to make ``count`` such keys here.
    """
    started = time.perf_counter()
    with multiprocessing.Pool(processes) as pool:
        pool.map(generate_rsa2048_pem, range(count), chunksize=1)
    return time.perf_counter() - started
