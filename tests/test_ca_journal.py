"""The CA ledger's journal (ledger.json + ledger.journal) and group issuance (issue_many)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from toolkit import ca
from toolkit.ca import store
from toolkit.ca.requests import IssueRequest
from toolkit.errors import CAError, OutputError, ToolkitError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("journal-template") / "pki"
    ca.init_ca(directory, "Journal Root", passphrase=None)
    return directory


@pytest.fixture
def authority(template: Path, tmp_path: Path) -> ca.CertificateAuthority:
    directory = tmp_path / "pki"
    shutil.copytree(template, directory)
    return ca.open_ca(directory)


def fresh_read(directory: Path) -> list[ca.LedgerEntry]:
    """The ledger as another process reads it (nothing cached)."""
    store._CACHE.clear()
    return ca.read_ledger(directory)


def journal_lines(directory: Path) -> list[dict[str, object]]:
    text = (directory / "ledger.journal").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def snapshot(directory: Path) -> list[dict[str, object]]:
    document = json.loads((directory / "ledger.json").read_text("utf-8"))
    certificates = document["certificates"]
    assert isinstance(certificates, list)
    return certificates


def test_an_issue_appends_one_line_and_leaves_the_snapshot(
    authority: ca.CertificateAuthority,
) -> None:
    directory = authority.directory
    first = authority.issue("ann")
    second = authority.issue("bob", email="bob@contoso.com")
    assert snapshot(directory) == []  # the snapshot is not rewritten per issue
    assert [line["serial"] for line in journal_lines(directory)] == [
        first.entry.serial,
        second.entry.serial,
    ]
    assert fresh_read(directory) == [first.entry, second.entry]
    assert ca.find_current(directory, "BOB") == second.entry
    raw = (directory / "ledger.journal").read_text("utf-8")
    assert "PRIVATE KEY" not in raw
    assert (directory / "ledger.journal").stat().st_mode & 0o777 == 0o644


def test_issue_many_records_a_group_and_refuses_per_request(
    authority: ca.CertificateAuthority,
) -> None:
    directory = authority.directory
    authority.issue("carol")
    results = authority.issue_many(
        [
            IssueRequest("dave", email="dave@contoso.com"),
            IssueRequest("carol"),  # already has a valid certificate
            IssueRequest("Dave"),  # the same name twice in the group
            IssueRequest("../x"),  # not a name
            IssueRequest("erin", days=30),
            IssueRequest("carol", renew=True),
        ]
    )
    dave, carol, twice, bad, erin, renewed = results
    assert isinstance(dave, ca.IssueResult) and dave.entry.cn == "dave@contoso.com"
    assert isinstance(carol, CAError) and "already has a valid certificate" in carol.message
    assert isinstance(twice, CAError) and "twice" in twice.message
    assert isinstance(bad, ToolkitError) and "certificate name" in bad.message
    assert isinstance(erin, ca.IssueResult) and erin.entry.days_left() in (29, 30)
    assert isinstance(renewed, ca.IssueResult) and renewed.entry.renewed_from
    assert [e.serial for e in renewed.superseded] == [renewed.entry.renewed_from]
    for result in (dave, erin, renewed):
        assert result.cert_path.is_file() and result.key_path.is_file()
    entries = {e.serial: e for e in fresh_read(directory)}
    assert entries[renewed.entry.renewed_from].status == "superseded"
    assert {e.name for e in entries.values() if e.status == "valid"} == {"carol", "dave", "erin"}
    # one append for the group: the superseded state of carol's old certificate, then the new
    names = [(line["name"], line["status"]) for line in journal_lines(directory)[1:]]
    assert names == [
        ("dave", "valid"),
        ("erin", "valid"),
        ("carol", "superseded"),
        ("carol", "valid"),
    ]


def test_a_torn_last_line_is_ignored_and_mended_by_the_next_issue(
    authority: ca.CertificateAuthority,
) -> None:
    directory = authority.directory
    kept = authority.issue("frank")
    journal = directory / "ledger.journal"
    whole = journal.read_bytes()
    with journal.open("ab") as handle:  # power lost in the middle of an append
        handle.write(whole[: len(whole) // 2])
    assert fresh_read(directory) == [kept.entry]
    later = authority.issue("grace")
    assert [e.name for e in fresh_read(directory)] == ["frank", "grace"]
    assert journal.read_bytes().endswith(b"\n")
    for line in journal.read_text("utf-8").splitlines():
        json.loads(line)  # the torn line is gone: folded away, not glued to the next one
    assert later.entry in fresh_read(directory)


def test_a_malformed_line_in_the_middle_is_an_error(authority: ca.CertificateAuthority) -> None:
    directory = authority.directory
    authority.issue("heidi")
    journal = directory / "ledger.journal"
    journal.write_bytes(b'{"not": "an entry"}\n' + journal.read_bytes())
    with pytest.raises(CAError, match=r"ledger\.journal: line 1 is malformed"):
        fresh_read(directory)


def test_compaction_folds_the_journal_into_the_snapshot(
    authority: ca.CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = authority.directory
    monkeypatch.setattr(store, "COMPACT_MIN_BYTES", 1)
    issued = [authority.issue(f"user{n}").entry for n in range(3)]
    entries = fresh_read(directory)
    assert entries == issued
    # the journal never outgrows the snapshot for long: everything reached ledger.json
    assert len(snapshot(directory)) + len(journal_lines(directory)) >= 3
    assert {c["serial"] for c in snapshot(directory)} >= {e.serial for e in issued[:2]}
    assert not list(directory.glob(".ledger.*.tmp"))


def test_a_compaction_cut_short_reads_the_same(authority: ca.CertificateAuthority) -> None:
    """Killed after the snapshot was written, before the journal was emptied: both hold the
    entries; a later revoke in the journal wins over the older state in either file."""
    directory = authority.directory
    one = authority.issue("ivan").entry
    two = authority.issue("judy").entry
    ca.revoke(directory, "ivan")
    merged = fresh_read(directory)
    document = json.loads((directory / "ledger.json").read_text("utf-8"))
    document["certificates"] = [e.to_json() for e in merged]
    (directory / "ledger.json").write_text(json.dumps(document))  # the journal stays as it is
    again = fresh_read(directory)
    assert again == merged
    assert [e.serial for e in again] == [one.serial, two.serial]
    assert again[0].status == "revoked"
    # and the other way round: an old "valid" line never undoes a recorded revocation
    document["certificates"] = [again[0].to_json()]
    (directory / "ledger.json").write_text(json.dumps(document))
    assert fresh_read(directory)[0].status == "revoked"


def test_an_old_ledger_without_journal_is_read_and_continued(
    authority: ca.CertificateAuthority,
) -> None:
    directory = authority.directory
    old = authority.issue("ken").entry
    document = json.loads((directory / "ledger.json").read_text("utf-8"))
    document["certificates"] = [old.to_json()]
    (directory / "ledger.json").write_text(json.dumps(document, indent=2))
    (directory / "ledger.journal").unlink()  # a CA folder from before the journal
    assert fresh_read(directory) == [old]
    new = authority.issue("lena").entry
    assert fresh_read(directory) == [old, new]
    with pytest.raises(CAError, match="already has a valid certificate"):
        authority.issue("ken")


def test_another_process_appends_are_seen(authority: ca.CertificateAuthority) -> None:
    """The incremental reader picks up lines appended after it last read."""
    directory = authority.directory
    first = authority.issue("mia").entry
    assert ca.read_ledger(directory) == [first]
    other = ca.open_ca(directory)
    store._CACHE.clear()  # as if ``other`` lived in another process
    second = other.issue("ned").entry
    store._CACHE.clear()
    assert ca.read_ledger(directory) == [first, second]
    third = authority.issue("olga").entry
    assert ca.certificate_history(directory, "NED") == [second]
    assert ca.read_ledger(directory) == [first, second, third]


def test_an_interrupted_issue_leaves_no_orphan_copy(authority: ca.CertificateAuthority) -> None:
    """Killed between the files and the ledger's append: redone, and the unrecorded
    certificate's copy in certs/ goes with it."""
    directory = authority.directory
    journal = directory / "ledger.journal"
    authority.issue("pat")
    before = journal.read_bytes()
    lost = authority.issue("quinn").entry
    journal.write_bytes(before)  # the append never happened
    store._CACHE.clear()
    assert (directory / lost.ca_copy).exists()
    redone = authority.issue("quinn").entry
    assert redone.serial != lost.serial
    assert not (directory / lost.ca_copy).exists()
    assert (directory / redone.ca_copy).exists()
    assert [e.name for e in fresh_read(directory)] == ["pat", "quinn"]


def test_a_failed_write_fails_the_whole_group(
    authority: ca.CertificateAuthority, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    results = authority.issue_many(
        [IssueRequest("rita"), IssueRequest("sam", output_dir=blocker / "sub")]
    )
    assert all(isinstance(r, OutputError) for r in results)
    assert fresh_read(authority.directory) == []
    assert not (authority.directory / "issued" / "rita" / "rita.pem").exists()
