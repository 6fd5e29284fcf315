"""The P2S certificate authority: a root for the gateway, client certificates, a ledger.

A CA folder (made by :func:`init_ca`) holds::

    ca.json                    what this folder is (format marker, root CN, thumbprint)
    root.key                   the root's key, PKCS#8 PEM, encrypted unless asked not to (0600)
    root.pem                   the root certificate, PEM
    root.cer                   the root certificate, DER (the file for ``az --public-cert-data``)
    root-public-cert-data.txt  one line of base64 DER: the portal's "Public certificate data"
    ledger.json                every certificate issued, with its status: a snapshot, rewritten
                               atomically when the journal outgrows it
    ledger.journal             the changes since the snapshot, one JSON entry per line (appended)
    ledger.lock                flock(2) target serialising ledger updates between processes
    certs/<SERIAL>.pem         a copy of every issued certificate (public), by serial
    issued/<name>/             default output of ``issue``: <name>.pem, .key (0600), .pfx

Modules: ``keys`` (in-memory key and certificate primitives), ``rules`` (input checks),
``ledger`` (folder layout and ledger entries), ``store`` (the ledger's files, snapshot and
journal, read incrementally), ``root`` (``init``), ``authority`` (issue, renew), ``requests``
(what an issue is asked for and gives), ``revoke``, ``azure`` (the upload and revoke
commands). Azure has no CRL for P2S: revocation is by SHA-1 thumbprint on the gateway, so
``revoke`` marks the ledger and returns the commands.
"""

from toolkit.ca.authority import CertificateAuthority, open_ca
from toolkit.ca.azure import AzureCommands, azure_resource_name, revocation_commands
from toolkit.ca.keys import KEY_TYPES
from toolkit.ca.ledger import DEFAULT_WARN_DAYS, LedgerEntry, normalize_thumbprint
from toolkit.ca.requests import IssueRequest, IssueResult
from toolkit.ca.revoke import RevokeResult, revoke
from toolkit.ca.root import DEFAULT_ROOT_CN, DEFAULT_ROOT_DAYS, CAInfo, CAInitResult, init_ca
from toolkit.ca.store import (
    CertificateStatus,
    certificate_history,
    current_by_name,
    find_current,
    list_certificates,
    read_ledger,
)

__all__ = [
    "DEFAULT_ROOT_CN",
    "DEFAULT_ROOT_DAYS",
    "DEFAULT_WARN_DAYS",
    "KEY_TYPES",
    "AzureCommands",
    "CAInfo",
    "CAInitResult",
    "CertificateAuthority",
    "CertificateStatus",
    "IssueRequest",
    "IssueResult",
    "LedgerEntry",
    "RevokeResult",
    "azure_resource_name",
    "certificate_history",
    "current_by_name",
    "find_current",
    "init_ca",
    "list_certificates",
    "normalize_thumbprint",
    "open_ca",
    "read_ledger",
    "revocation_commands",
    "revoke",
]
