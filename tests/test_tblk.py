"""`check` on Tunnelblick bundles: what Tunnelblick refuses at install is reported."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ClientFiles
from toolkit.cli import app
from toolkit.errors import ExitCode
from toolkit.targets.tunnelblick import check_bundle, check_info_plist, read_bundle


@pytest.fixture
def bundle_dir(tmp_path: Path, package_zip: Path, client_files: ClientFiles) -> Path:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            str(package_zip),
            "--cert",
            str(client_files.cert),
            "--key",
            str(client_files.key),
            "--name",
            "alice",
            "-t",
            "tunnelblick",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    return out / "alice/tunnelblick"


def test_generated_bundle_and_zip_are_clean(bundle_dir: Path) -> None:
    for path in (bundle_dir / "alice-mac.tblk", bundle_dir / "alice-mac.tblk.zip"):
        bundle = read_bundle(path)
        assert bundle.name == "alice-mac.tblk"
        assert sorted(bundle.files) == ["Contents/Info.plist", "Contents/Resources/config.ovpn"]
        assert check_bundle(bundle) == []
        result = CliRunner().invoke(app, ["check", str(path), "-t", "tunnelblick"])
        assert result.exit_code == 0, result.output
        assert "ok for Tunnelblick" in result.stdout


def test_extra_file_and_unknown_plist_key_are_errors(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy" / "alice-mac.tblk"
    shutil.copytree(bundle_dir / "alice-mac.tblk", copy)
    (copy / "Contents/Resources/README.txt").write_text("hello")
    plist = copy / "Contents/Info.plist"
    plist.write_text(
        plist.read_text().replace(
            "<key>TBReplaceIdentical</key>",
            "<key>Foo</key><string>x</string><key>TBReplaceIdentical</key>",
        )
    )
    result = CliRunner().invoke(app, ["check", str(copy), "-t", "tunnelblick"])
    assert result.exit_code == ExitCode.FINDINGS
    assert "README.txt': Unknown extension" in result.stdout
    assert "Unknown key 'Foo'" in result.stdout


def test_stock_azure_profile_in_a_bundle_reports_log(tmp_path: Path, gateway: object) -> None:
    from toolkit.sample import SampleGateway

    assert isinstance(gateway, SampleGateway)
    archive = tmp_path / "x.tblk.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.tblk/Contents/Resources/config.ovpn", gateway.profile_text())
    result = CliRunner().invoke(app, ["check", str(archive), "-t", "tunnelblick"])
    assert result.exit_code == ExitCode.FINDINGS
    assert "'log'" in result.stdout
    assert "placeholder $CLIENTCERTIFICATE" in result.stdout


def test_zip_with_two_top_folders_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.tblk/Contents/Resources/config.ovpn", "client\n")
        zf.writestr("b.tblk/Contents/Resources/config.ovpn", "client\n")
    result = CliRunner().invoke(app, ["check", str(archive), "-t", "tunnelblick"])
    assert result.exit_code == ExitCode.INPUT
    assert "exactly one top folder" in result.stderr


def test_bundle_needs_tunnelblick_target(bundle_dir: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(bundle_dir / "alice-mac.tblk"), "-t", "ios"])
    assert result.exit_code == ExitCode.INPUT
    assert "--target tunnelblick" in result.stderr


@pytest.mark.parametrize(
    ("plist", "fragment"),
    [
        ({"CFBundleVersion": "1"}, "TBPackageVersion must be"),
        ({"TBPackageVersion": "1", "CFBundleIdentifier": "a..b"}, "invalid CFBundleIdentifier"),
        ({"TBPackageVersion": "1", "CFBundleVersion": "v2"}, "digits and dots"),
        ({"TBPackageVersion": "1", "TBReplaceIdentical": "always"}, "bad TBReplaceIdentical"),
    ],
    ids=["no-package-version", "bad-id", "bad-version", "bad-replace"],
)
def test_info_plist_rules(plist: dict[str, str], fragment: str) -> None:
    import plistlib

    messages = [f.message for f in check_info_plist(plistlib.dumps(plist))]
    assert any(fragment in m for m in messages), messages
