"""From the administrator's desk to the user's device (issue 10): what to send, the guide from
`generate`, names as people have them, the CLI habits (completion, -V, NO_COLOR, --json
everywhere) and the CA's memory of its gateway.

CLI runs read stdout, stderr and the exit code separately; outputs are parsed back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

import toolkit
from toolkit import ca
from toolkit.batch.userlist import load_user_list
from toolkit.ca import keys as pki
from toolkit.ca.rules import check_email
from toolkit.cli import app
from toolkit.errors import UsageError, UserListError
from toolkit.names import check_display_name, check_name, suggest_name

CA_PASS = "delivery CA passphrase"


def run(*args: object, env: dict[str, str] | None = None, color: bool = False) -> Result:
    return CliRunner().invoke(
        app, [str(a) for a in args], env=env, color=color, catch_exceptions=False
    )


def one_error(result: Result, code: int) -> tuple[str, str]:
    """Exit ``code``; stderr is exactly 'ERROR: ...' and 'hint: ...'; nothing on stdout."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error.startswith("ERROR: ") and hint.startswith("hint: ")
    return error, hint


@pytest.fixture
def pem_pair(tmp_path: Path, client: pki.IssuedCertificate) -> tuple[Path, Path]:
    cert, key = tmp_path / "alice.pem", tmp_path / "alice.key"
    cert.write_bytes(client.cert_pem)
    key.write_bytes(client.key_pem())
    return cert, key


def generate(package: Path, pair: tuple[Path, Path], out: Path, *extra: object) -> Result:
    cert, key = pair
    return run("generate", package, "--cert", cert, "--key", key, "--output", out, *extra)


# --- names as people have them --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("José García", "jose.garcia"),
        ("Zoë  O'Brien", "zoe.o-brien"),
        ("Ångström", "angstrom"),
        ("François-Xavier Müller", "francois-xavier.muller"),
        ("alice", "alice"),
    ],
)
def test_suggested_names_are_transliterated_lower_case_dotted_and_valid(
    text: str, suggestion: str
) -> None:
    assert suggest_name(text) == suggestion
    assert check_name(suggestion) == suggestion


@pytest.mark.parametrize(
    ("what", "shown"),
    [
        ("--name", "--name"),
        ("users.yaml line 3: name", "name"),
        ("certificate name", "certificate name"),
    ],
)
def test_a_name_with_accents_gets_one_wording_with_a_suggestion(what: str, shown: str) -> None:
    with pytest.raises(UsageError) as info:
        check_name("José García", what)
    assert info.value.message == (
        f"{what} 'José García' is used as a file name and may hold only the letters A-Z, digits, "
        "'.', '_', '-' and '@', starting with a letter or digit (not 'é', ' ', 'í')"
    )
    assert info.value.hint is not None
    assert info.value.hint.startswith(f"use 'jose.garcia' as the {shown} ")
    assert "display name" in info.value.hint


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=90))
def test_every_suggestion_passes_the_name_check(text: str) -> None:
    assert check_name(suggest_name(text)) == suggest_name(text)


def test_display_names_hold_accents_and_spaces() -> None:
    assert check_display_name("José García (Contoso VPN)") == "José García (Contoso VPN)"


def test_generate_refuses_an_accented_name_and_accepts_it_as_display_name(
    package_zip: Path, pem_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    error, hint = one_error(generate(package_zip, pem_pair, out, "--name", "José García"), 2)
    assert "--name 'José García'" in error and "'jose.garcia'" in hint
    assert not out.exists()
    result = generate(
        package_zip,
        pem_pair,
        out,
        "--name",
        "jose.garcia",
        "--display-name",
        "José García",
        "-t",
        "ios",
    )
    assert result.exit_code == 0, result.stderr
    profile = (out / "jose.garcia" / "ios" / "jose.garcia-iphone.ovpn").read_text("utf-8")
    assert "# OVPN_ACCESS_SERVER_PROFILE=José García\n" in profile
    guide = (out / "jose.garcia" / "INSTALL.html").read_text("utf-8")
    assert "Tap the switch next to <strong>José García</strong>" in guide


def test_ca_issue_words_the_name_problem_as_generate_does(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    env = {"DELIVERY_CA_PASS": CA_PASS}
    created = run(
        "ca", "init", "--output", directory, "--passphrase-env", "DELIVERY_CA_PASS", env=env
    )
    assert created.exit_code == 0, created.stderr
    result = run(
        "ca",
        "issue",
        "--ca",
        directory,
        "--name",
        "José García",
        "--passphrase-env",
        "DELIVERY_CA_PASS",
        env=env,
    )
    error, hint = one_error(result, 2)
    with pytest.raises(UsageError) as info:
        check_name("José García")
    assert error == f"ERROR: {info.value.message}"
    assert hint == f"hint: {info.value.hint}"
    # and the e-mail address: refused with the same kind of suggestion
    result = run(
        "ca",
        "issue",
        "--ca",
        directory,
        "--name",
        "jose.garcia",
        "--email",
        "josé.garcía@contoso.com",
        "--passphrase-env",
        "DELIVERY_CA_PASS",
        env=env,
    )
    error, hint = one_error(result, 2)
    assert "'josé.garcía@contoso.com' has letters outside A-Z ('é', 'í')" in error
    assert "'jose.garcia@contoso.com'" in hint
    assert ca.read_ledger(directory) == []


def test_check_email_suggests_an_ascii_address() -> None:
    with pytest.raises(UsageError) as info:
        check_email("josé.garcía@contoso.com")
    assert info.value.hint is not None and "'jose.garcia@contoso.com'" in info.value.hint
    with pytest.raises(UsageError, match="is not valid"):
        check_email("not an address")
    assert check_email("jose.garcia@contoso.com") == "jose.garcia@contoso.com"


def test_the_user_list_refuses_accents_in_name_and_email_at_validation(
    tmp_path: Path, package_zip: Path
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(
        f"package: {package_zip}\n"
        f"ca: {{dir: {tmp_path}}}\n"
        "users:\n"
        "  - name: José García\n"
        "  - name: jose.garcia\n"
        "    display_name: José García\n"
        "    email: josé.garcía@contoso.com\n",
        encoding="utf-8",
    )
    with pytest.raises(UserListError) as info:
        load_user_list(users)
    name_problem, email_problem = info.value.details
    assert name_problem.startswith(f"{users}:4:11: name 'José García' is used as a file name")
    assert "use 'jose.garcia' as the name" in name_problem
    assert email_problem.startswith(f"{users}:7:12: email 'josé.garcía@contoso.com' has letters")
    assert "'jose.garcia@contoso.com'" in email_problem


# --- generate: the guide, the contact, what to send ----------------------------------------------
def test_generate_writes_the_guide_with_the_contact_and_says_what_to_send(
    package_zip: Path, pem_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    targets = ["-t", "tunnelblick", "-t", "ios", "-t", "openvpn"]
    result = generate(
        package_zip, pem_pair, out, "--name", "alice", *targets, "--contact", "IT desk & co"
    )
    assert result.exit_code == 0, result.stderr
    user = out / "alice"
    guide = (user / "INSTALL.html").read_text("utf-8")
    assert "Ask <strong>IT desk &amp; co</strong>" in guide
    sent = [
        user / "tunnelblick" / "alice-mac.tblk.zip",
        user / "ios" / "alice-iphone.ovpn",
        user / "openvpn" / "alice-linux-windows.ovpn",
    ]
    for path in sent:
        assert path.is_file()
        assert f'<code class="file">{path.name}</code>' in guide
        assert str(path) in result.stdout  # the next-step lines name each file to send
    assert f"Send {user / 'INSTALL.html'} with them" in result.stdout
    # Tunnelblick lists the bundle under its folder name, which the guide names
    assert "Connect alice-mac</strong>" in guide
    assert "OpenVPN writes its messages to openvpn.log" in guide  # Azure's `log openvpn.log`


def test_no_guide_skips_it(package_zip: Path, pem_pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = generate(package_zip, pem_pair, out, "--name", "alice", "--no-guide", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["user"]["guide"] is None
    assert [s["target"] for s in document["user"]["send"]] == ["tunnelblick", "ios"]
    assert not (out / "alice" / "INSTALL.html").exists()


@pytest.mark.parametrize("contact", ["", "a\nb", "x" * 201], ids=["empty", "newline", "long"])
def test_a_bad_contact_is_a_usage_error(
    package_zip: Path, pem_pair: tuple[Path, Path], tmp_path: Path, contact: str
) -> None:
    out = tmp_path / "out"
    error, _ = one_error(generate(package_zip, pem_pair, out, "--contact", contact), 2)
    assert "--contact must be one line" in error
    assert not out.exists()


# --- CLI habits -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0
    assert result.stdout == f"ovpn-toolkit {toolkit.__version__}\n"
    assert result.stderr == ""


def _error_with_colour(env: dict[str, str] | None, *flags: str) -> str:
    result = run(*flags, "inspect", "/nonexistent/VNet1GW.zip", env=env, color=True)
    assert result.exit_code == 2
    assert result.stdout == ""
    return result.stderr


def test_colour_is_on_for_a_terminal_and_off_with_no_color() -> None:
    assert "\x1b[" in _error_with_colour({"NO_COLOR": ""})  # empty NO_COLOR: colour stays
    assert "\x1b[" not in _error_with_colour({"NO_COLOR": "1"})
    plain = _error_with_colour(None, "--no-color")
    assert "\x1b[" not in plain and plain.startswith("ERROR: ")


def _console_script() -> str:
    script = shutil.which("ovpn-toolkit") or str(Path(sys.executable).parent / "ovpn-toolkit")
    if not Path(script).exists():
        pytest.skip("the ovpn-toolkit console script is not installed (pip install -e .)")
    return script


def test_shell_completion_completes_commands_and_options() -> None:
    script = _console_script()
    shown = subprocess.run(
        [script, "--show-completion", "bash"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SHELL": "/bin/bash"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "_OVPN_TOOLKIT_COMPLETE=complete_bash" in shown.stdout

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_OVPN_TOOLKIT_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        done = subprocess.run([script], capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("ovpn-toolkit ca re") == ["renew", "revoke"]
    assert {"--no-guide", "--contact"} <= set(complete("ovpn-toolkit generate --"))


def test_demo_json_is_one_document(tmp_path: Path) -> None:
    result = run("demo", "--output", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema_version"] == 1 and document["command"] == "demo"
    users = {u["name"]: u for u in document["users"]}
    assert set(users) == {"alice", "bob", "carol", "dave"}
    for user in users.values():
        for item in user["send"]:
            assert (Path(document["output"]) / item["path"]).is_file()
    assert document["counts"]["written"] == 4
    guide = (Path(document["output"]) / "alice" / "INSTALL.html").read_text("utf-8")
    assert "Contoso IT desk" in guide  # the demo's contact


def test_schema_accepts_json() -> None:
    result = run("schema", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "ovpn-toolkit batch user list"


# --- the CA remembers its gateway -----------------------------------------------------------------
def test_ca_init_remembers_the_gateway_for_revoke_and_options_override(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    env = {"DELIVERY_CA_PASS": CA_PASS}
    created = run(
        "ca",
        "init",
        "--output",
        directory,
        "--passphrase-env",
        "DELIVERY_CA_PASS",
        "--gateway",
        "VNet1GW",
        "--resource-group",
        "TestRG1",
        env=env,
    )
    assert created.exit_code == 0, created.stderr
    stored = json.loads((directory / "ca.json").read_text())
    assert stored["azure"] == {"gateway": "VNet1GW", "resource_group": "TestRG1"}
    issued = run(
        "ca",
        "issue",
        "--ca",
        directory,
        "--name",
        "alice",
        "--passphrase-env",
        "DELIVERY_CA_PASS",
        env=env,
    )
    assert issued.exit_code == 0, issued.stderr
    renewed = run(
        "ca", "renew", "alice", "--ca", directory, "--passphrase-env", "DELIVERY_CA_PASS", env=env
    )
    assert renewed.exit_code == 0, renewed.stderr
    old = next(e for e in ca.read_ledger(directory) if e.status == "superseded")
    assert f"ovpn-toolkit ca revoke --ca {directory} {old.thumbprint_sha1}" in renewed.stdout
    revoked = run("ca", "revoke", old.thumbprint_sha1, "--ca", directory, "--json")
    assert revoked.exit_code == 0, revoked.stderr
    commands = json.loads(revoked.stdout)["azure"]["commands"]
    assert "--resource-group TestRG1 --gateway-name VNet1GW" in commands["az"]
    assert "-VirtualNetworkGatewayName VNet1GW -ResourceGroupName TestRG1" in commands["powershell"]
    assert commands["placeholders"] is False
    again = run(
        "ca",
        "revoke",
        "alice",
        "--ca",
        directory,
        "--gateway",
        "OtherGW",
        "--resource-group",
        "RG2",
    )
    assert again.exit_code == 0, again.stderr
    assert "--resource-group RG2 --gateway-name OtherGW" in again.stdout
    assert "<resource-group>" not in again.stdout and "note: replace" not in again.stderr


def test_a_ca_without_memory_still_prints_placeholders(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    created = run("ca", "init", "--output", directory, "--no-passphrase")
    assert created.exit_code == 0, created.stderr
    assert json.loads((directory / "ca.json").read_text()).get("azure", {}) == {}
    assert run("ca", "issue", "--ca", directory, "--name", "bob").exit_code == 0
    revoked = run("ca", "revoke", "bob", "--ca", directory)
    assert revoked.exit_code == 0
    assert "<resource-group>" in revoked.stdout and "note: replace" in revoked.stderr


@pytest.mark.parametrize("value", ["my gateway", "gw;rm -rf /", "x" * 91, ""])
def test_ca_init_refuses_names_azure_would_refuse(tmp_path: Path, value: str) -> None:
    directory = tmp_path / "pki"
    error, _ = one_error(
        run("ca", "init", "--output", directory, "--no-passphrase", "--gateway", value), 2
    )
    assert "--gateway" in error and "is not an Azure resource name" in error
    assert not (directory / "ca.json").exists()


# --- the batch on a terminal ----------------------------------------------------------------------
def _read_all(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the program closed its end of the terminal
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_batch_progress_on_a_terminal_shows_n_of_n_and_failures_at_once(tmp_path: Path) -> None:
    script = _console_script()
    made = run("demo", "--output", tmp_path / "demo")
    assert made.exit_code == 0, made.stderr
    (tmp_path / "demo" / "secrets" / "bob.pass").write_text("not bob's password\n")
    master, slave = os.openpty()
    process = subprocess.Popen(
        [script, "batch", str(tmp_path / "demo" / "users.yaml"), "--force", "--jobs", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
    )
    os.close(slave)
    try:
        terminal = _read_all(master).decode("utf-8", "replace")
        stdout, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert process.returncode == 3, terminal
    assert "4/4" in terminal  # n/N
    assert "0:00:" in terminal  # the time elapsed
    # printed on stderr above the bar, as one line (the terminal wraps it, not the program)
    failure = next(line for line in terminal.split("\r\n") if "bob: failed: " in line)
    assert failure.endswith("(hint: check the passphrase; it is never shown)")
    assert "wrong passphrase for the PKCS#12 file" in failure
    assert "\x1b[3" not in terminal  # NO_COLOR: no colours (cursor movements are fine)
    assert stdout.decode().splitlines()[-2] == "4 users: 3 written, 1 failed"
