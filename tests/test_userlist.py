"""The batch user list: validated whole, every problem with file:line:column, unsafe YAML refused.

Each test writes the YAML text itself so the expected line and column can be read off it;
tests run inside ``tmp_path`` so the messages start with ``users.yaml:``.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.batch import userlist
from toolkit.batch.userlist import load_user_list
from toolkit.cli import app
from toolkit.demo import USERS_YAML
from toolkit.errors import ExitCode, UserListError


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the cwd, with the files a valid list refers to (existence is all that counts)."""
    monkeypatch.chdir(tmp_path)
    for name in ("pkg.zip", "alice.pem", "alice.key", "bob.pfx", "root.pem", "bob.pass"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "pki").mkdir()
    return tmp_path


def _write(folder: Path, text: str, name: str = "users.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return Path(name)


def _problems(folder: Path, text: str) -> list[str]:
    """The detail lines of the UserListError that loading ``text`` must raise."""
    with pytest.raises(UserListError) as caught:
        load_user_list(_write(folder, text))
    assert caught.value.details, caught.value.message
    assert caught.value.message.startswith(f"users.yaml: {len(caught.value.details)} problem")
    return caught.value.details


def _error(folder: Path, text: str) -> UserListError:
    """An error raised before validation (syntax, tags, aliases, empty): no detail lines."""
    with pytest.raises(UserListError) as caught:
        load_user_list(_write(folder, text))
    assert caught.value.details == []
    return caught.value


def test_a_valid_list_loads_with_defaults_applied(folder: Path) -> None:
    users = load_user_list(
        _write(
            folder,
            """
            package: pkg.zip
            targets: [ios]
            ca: {dir: pki, passphrase_env: CA_PASS}
            defaults: {days: 90, key_type: rsa3072, warn_days: 10}
            users:
              - name: alice
                cert: alice.pem
                key: alice.key
                targets: [tunnelblick, openvpn]
              - name: carol
                email: carol@contoso.com
                days: 30
            """,
        )
    )
    assert users.package == folder / "pkg.zip"
    assert users.targets == ("ios",)
    assert users.warn_days == 10
    assert users.ca is not None
    assert users.ca.dir == folder / "pki"
    assert users.ca.passphrase_env == "CA_PASS"
    alice, carol = users.users
    assert (alice.name, alice.line, alice.targets) == ("alice", 6, ("tunnelblick", "openvpn"))
    assert (alice.cert, alice.key, alice.issued_from_ca) == (
        folder / "alice.pem",
        folder / "alice.key",
        False,
    )
    assert (carol.targets, carol.days, carol.key_type) == (("ios",), 30, "rsa3072")
    assert carol.issued_from_ca and carol.email == "carol@contoso.com"


# --- YAML syntax ---------------------------------------------------------------------------------
def test_yaml_syntax_error_names_line_and_column(folder: Path) -> None:
    error = _error(
        folder,
        """
        package: pkg.zip
        users:
          - name: alice
           cert: alice.pem
        """,
    )
    assert error.message.startswith("users.yaml:4:4: YAML error: expected <block end>")
    assert error.hint == "fix the YAML syntax at that position"


def test_yaml_tab_indentation_is_a_syntax_error_at_the_tab(folder: Path) -> None:
    error = _error(folder, "package: pkg.zip\nusers:\n\t- name: alice\n")
    assert error.message.startswith("users.yaml:3:1: YAML error: ")
    assert "cannot start any token" in error.message


def test_syntax_error_via_cli_exits_2_and_writes_nothing(folder: Path) -> None:
    _write(folder, "package: pkg.zip\nusers: [{name: alice, cert: alice.pem\n")
    result = CliRunner().invoke(app, ["batch", "users.yaml", "--output", "out"])
    assert result.exit_code == ExitCode.INPUT == 2
    assert "ERROR: users.yaml:3:1: YAML error: expected ',' or '}'" in result.stderr
    assert result.stdout == ""
    assert not (folder / "out").exists()


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=repr)
def test_empty_file(folder: Path, text: str) -> None:
    error = _error(folder, text)
    assert error.message == "users.yaml: the file is empty"
    assert error.hint is not None and "users-yaml.md" in error.hint


def test_top_level_must_be_a_mapping(folder: Path) -> None:
    assert _problems(folder, "- alice\n- bob\n") == [
        "users.yaml:1:1: top level must be a mapping (key: value)"
    ]


def test_missing_required_top_level_keys(folder: Path) -> None:
    assert _problems(folder, "targets: [ios]\n") == [
        "users.yaml:1:1: missing required key 'package' (the Azure P2S package (zip))",
        "users.yaml:1:1: missing required key 'users' (a list of users with at least a name)",
    ]


def test_missing_file_and_oversized_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserListError, match=r"^nope\.yaml: no such file$"):
        load_user_list(Path("nope.yaml"))
    monkeypatch.setattr(userlist, "MAX_BYTES", 100)
    path = _write(folder, "package: pkg.zip\n" + "# padding\n" * 20)
    with pytest.raises(UserListError, match=r"over the 100-byte limit"):
        load_user_list(path)


# --- unknown keys, types, targets -------------------------------------------------------------
def test_unknown_keys_at_every_level_with_did_you_mean(folder: Path) -> None:
    details = _problems(
        folder,
        """
        package: pkg.zip
        targts: [ios]
        ca:
          dir: pki
          pasphrase_env: CA_PASS
        defaults:
          warn_dayz: 10
        users:
          - name: alice
            usrname: alice
            cert: alice.pem
            key: alice.key
            colour: blue
        """,
    )
    assert details == [
        "users.yaml:2:1: top level: unknown key 'targts' (did you mean 'targets'?)",
        "users.yaml:5:3: ca: unknown key 'pasphrase_env' (did you mean 'passphrase_env'?)",
        "users.yaml:7:3: defaults: unknown key 'warn_dayz' (did you mean 'warn_days'?)",
        "users.yaml:10:5: user: unknown key 'usrname' (did you mean 'name'?)",
        "users.yaml:13:5: user: unknown key 'colour' (allowed: "
        + ", ".join(userlist.USER_KEYS)
        + ")",
    ]


def test_wrong_types_are_reported_where_the_value_is(folder: Path) -> None:
    details = _problems(
        folder,
        """
        package: pkg.zip
        ca: {dir: pki}
        defaults: {days: "ten", key_type: rsa1024}
        users:
          - name: alice
            targets: 5
          - name: bob
            disable_dco: "yes"
            days: 0
          - name: 42
          - carol
        """,
    )
    assert details == [
        "users.yaml:3:18: 'days' must be a whole number",
        "users.yaml:3:35: 'key_type' must be one of rsa2048, rsa3072, rsa4096",
        "users.yaml:6:14: 'targets' must be a non-empty list of targets "
        "(choose from: tunnelblick, ios, openvpn, mobileconfig)",
        "users.yaml:8:18: 'disable_dco' must be true or false",
        "users.yaml:9:11: 'days' must be between 1 and 36500",
        "users.yaml:10:11: 'name' must be a string",
        "users.yaml:11:5: user must be a mapping (key: value)",
    ]


def test_users_must_be_a_non_empty_list(folder: Path) -> None:
    assert _problems(folder, "package: pkg.zip\nusers: []\n") == [
        "users.yaml:2:8: 'users' must be a non-empty list"
    ]
    assert _problems(folder, "package: pkg.zip\nusers: {name: alice}\n") == [
        "users.yaml:2:8: 'users' must be a non-empty list"
    ]


def test_unknown_targets(folder: Path) -> None:
    details = _problems(
        folder,
        """
        package: pkg.zip
        targets: [ios, tunnelblik]
        users:
          - name: alice
            cert: alice.pem
            key: alice.key
            targets: [android]
          - name: bob
            pfx: bob.pfx
            targets: []
        """,
    )
    assert details == [
        "users.yaml:2:16: unknown target 'tunnelblik' (did you mean 'tunnelblick'?)",
        "users.yaml:7:15: unknown target 'android' "
        "(choose from: tunnelblick, ios, openvpn, mobileconfig)",
        "users.yaml:10:14: 'targets' must be a non-empty list of targets "
        "(choose from: tunnelblick, ios, openvpn, mobileconfig)",
    ]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../evil", "contains '/'"),
        ("con", "reserved device name"),
        ("a..b", "contains '..'"),
        ("-alice", "may hold only the letters A-Z"),
        ("x" * 65, "longer than 64"),
    ],
    ids=["traversal", "windows-device", "dotdot", "leading-dash", "too-long"],
)
def test_unsafe_user_names_are_refused_at_the_name(folder: Path, name: str, fragment: str) -> None:
    details = _problems(
        folder,
        f"""
        package: pkg.zip
        users:
          - name: "{name}"
            cert: alice.pem
        """,
    )
    assert len(details) == 1
    assert details[0].startswith(f"users.yaml:3:11: name {name!r} ")
    assert fragment in details[0]


# --- duplicates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second"),
    [("alice", "alice"), ("alice", "Alice"), ("ALICE@contoso.com", "alice@Contoso.com")],
    ids=["same", "case", "case-email"],
)
def test_duplicate_names_incl_case_folding(folder: Path, first: str, second: str) -> None:
    details = _problems(
        folder,
        f"""
        package: pkg.zip
        ca: {{dir: pki}}
        users:
          - name: {first}
          - name: bob
          - name: {second}
        """,
    )
    assert details == [
        f"users.yaml:6:5: duplicate user name '{second}' (the same as the user on line 4 "
        "(names are compared case-insensitively after sanitising))"
    ]


def test_duplicate_names_after_sanitising(folder: Path) -> None:
    details = _problems(
        folder, "package: pkg.zip\nca: {dir: pki}\nusers: [{name: alice}, {name: alice_}]\n"
    )
    assert details == [
        "users.yaml:3:24: duplicate user name 'alice_' (the same as the user on line 3 "
        "(names are compared case-insensitively after sanitising))"
    ]


def test_similar_but_distinct_names_are_not_duplicates(folder: Path) -> None:
    users = load_user_list(
        _write(
            folder,
            "package: pkg.zip\nca: {dir: pki}\n"
            "users: [{name: alice}, {name: alicia}, {name: alice2}]\n",
        )
    )
    assert [u.name for u in users.users] == ["alice", "alicia", "alice2"]


# --- files --------------------------------------------------------------------------------------
def test_missing_files_are_reported_with_where_they_were_looked_for(folder: Path) -> None:
    details = _problems(
        folder,
        """
        package: VNet1GW.zip
        roots: [root.pem, other-root.pem]
        ca: {dir: no-pki, passphrase_file: ca.pass}
        users:
          - name: alice
            cert: certs/alice.pem
            key: certs/alice.key
            chain: [inter.pem]
          - name: bob
            pfx: bob2.pfx
            passphrase_file: secrets/bob.pass
        """,
    )
    expected = [
        (1, 10, "package", "VNet1GW.zip"),
        (2, 19, "roots", "other-root.pem"),
        (3, 11, "dir", "no-pki"),
        (3, 36, "passphrase_file", "ca.pass"),
        (6, 11, "cert", "certs/alice.pem"),
        (7, 10, "key", "certs/alice.key"),
        (8, 13, "chain", "inter.pem"),
        (10, 10, "pfx", "bob2.pfx"),
        (11, 22, "passphrase_file", "secrets/bob.pass"),
    ]
    assert details == [
        f"users.yaml:{line}:{col}: '{key}': {text} does not exist (looked for {folder / text})"
        for line, col, key, text in expected
    ]


def test_relative_paths_resolve_against_the_yaml_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = tmp_path / "team"
    (team / "certs").mkdir(parents=True)
    for name in ("VNet1GW.zip", "certs/alice.pem", "certs/alice.key", "root.pem"):
        (team / name).write_bytes(b"x")
    (team / "users.yaml").write_text(
        "package: VNet1GW.zip\noutput: profiles\nroots: root.pem\n"
        "users: [{name: alice, cert: certs/alice.pem, key: certs/alice.key}]\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # none of the files exist relative to here
    for spelling in (Path("../team/users.yaml"), team / "users.yaml"):
        users = load_user_list(spelling)
        assert users.package == team / "VNet1GW.zip"
        assert users.output == team / "profiles"
        assert users.roots == (team / "root.pem",)
        assert users.users[0].cert == team / "certs" / "alice.pem"
        assert users.users[0].key == team / "certs" / "alice.key"
        # absolute, so the batch's fingerprints do not depend on how the file was named
        assert users.package.is_absolute() and "../" not in str(users.package)


# --- credentials --------------------------------------------------------------------------------
def test_user_without_credentials_needs_a_ca(folder: Path) -> None:
    text = """
        package: pkg.zip
        {ca}
        users:
          - name: alice
            cert: alice.pem
            key: alice.key
          - name: carol
            email: carol@contoso.com
        """
    assert _problems(folder, text.format(ca="")) == [
        "users.yaml:7:5: user 'carol' has no credentials and there is no 'ca' "
        "(give cert/key or pfx, or add a top-level 'ca: {dir: ...}' to issue one)"
    ]
    users = load_user_list(_write(folder, text.format(ca="ca: {dir: pki}")))
    assert [u.issued_from_ca for u in users.users] == [False, True]


def test_conflicting_credentials(folder: Path) -> None:
    details = _problems(
        folder,
        """
        package: pkg.zip
        users:
          - name: alice
            cert: alice.pem
            pfx: bob.pfx
            passphrase_env: ALICE_PASS
            passphrase_file: bob.pass
          - name: bob
            key: alice.key
            pfx: bob.pfx
        """,
    )
    assert details == [
        "users.yaml:3:5: user 'alice': give either cert/key or pfx, not both",
        "users.yaml:3:5: user 'alice': give passphrase_env or passphrase_file, not both",
        "users.yaml:9:10: user 'bob': 'key' without 'cert'",
    ]


@pytest.mark.parametrize(
    ("text", "position", "where", "key"),
    [
        (
            "users:\n  - {name: alice, pfx: bob.pfx, password: hunter2}\n",
            "2:33",
            "user",
            "password",
        ),
        (
            "users:\n  - name: alice\n    pfx: bob.pfx\n    passphrase: hunter2\n",
            "4:5",
            "user",
            "passphrase",
        ),
        ("ca: {dir: pki, passphrase: hunter2}\nusers: [{name: a}]\n", "1:16", "ca", "passphrase"),
        ("secret: hunter2\nusers: [{name: a, pfx: bob.pfx}]\n", "1:1", "top level", "secret"),
        (
            "users: [{name: a, pfx: bob.pfx, pfx_password: hunter2}]\n",
            "1:33",
            "user",
            "pfx_password",
        ),
    ],
    ids=["password", "passphrase", "ca-passphrase", "top-secret", "pfx_password"],
)
def test_literal_passwords_are_refused_and_never_echoed(
    folder: Path, text: str, position: str, where: str, key: str
) -> None:
    details = _problems(folder, "package: pkg.zip\n" + text)
    line, col = position.split(":")
    assert details == [
        f"users.yaml:{int(line) + 1}:{col}: {where}: literal secret '{key}' is not allowed "
        "(name an environment variable (passphrase_env) or a file (passphrase_file))"
    ]
    result = CliRunner().invoke(app, ["batch", "users.yaml", "--output", "out"])
    assert result.exit_code == 2
    assert "literal secret" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


# --- unsafe YAML --------------------------------------------------------------------------------
def test_python_object_apply_is_refused_and_never_runs(folder: Path) -> None:
    marker = folder / "PWNED"
    for text, position in [
        (
            f'package: !!python/object/apply:os.system ["touch {marker}"]\nusers: [{{name: a}}]\n',
            "1:10",
        ),
        (
            f"package: pkg.zip\nusers: !!python/object/apply:os.system\n  - touch {marker}\n",
            "2:8",
        ),
        ("package: pkg.zip\nusers:\n  - name: !!python/name:os.system a\n", "3:11"),
    ]:
        error = _error(folder, text)
        assert error.message.startswith(f"users.yaml:{position}: tag 'tag:yaml.org,2002:python/")
        assert error.message.endswith("' is not allowed")
        assert error.hint == "use plain strings, numbers, lists and mappings"
        result = CliRunner().invoke(app, ["batch", "users.yaml", "--output", "out"])
        assert result.exit_code == 2
    assert not marker.exists()
    assert not (folder / "out").exists()


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!foo alice", "!foo"),
        ("!<tag:example.com,2024:user> alice", "tag:example.com,2024:user"),
        ("!!binary aGVsbG8=", "tag:yaml.org,2002:binary"),
        ("!!set {a, b}", "tag:yaml.org,2002:set"),
        ("2024-01-01", "tag:yaml.org,2002:timestamp"),
    ],
    ids=["custom", "verbatim", "binary", "set", "timestamp"],
)
def test_custom_and_non_plain_tags_are_refused(folder: Path, value: str, tag: str) -> None:
    error = _error(
        folder, f"package: pkg.zip\nusers:\n  - name: alice\n    display_name: {value}\n"
    )
    assert error.message == f"users.yaml:4:19: tag '{tag}' is not allowed"


def test_alias_expansion_bomb_is_refused_quickly(folder: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join([*lines, "package: pkg.zip", "users: *i", ""])  # 9**9 = 387 million strings
    start = time.monotonic()
    error = _error(folder, text)
    elapsed = time.monotonic() - start
    assert error.message == "users.yaml:2:8: YAML error: anchors and aliases are not allowed"
    assert elapsed < 1.0


def test_a_single_alias_is_refused_too(folder: Path) -> None:
    error = _error(
        folder, "package: &p pkg.zip\nca: {dir: pki}\nusers:\n  - name: alice\n    email: *p\n"
    )
    assert error.message == "users.yaml:5:12: YAML error: anchors and aliases are not allowed"


# --- everything at once -------------------------------------------------------------------------
def test_all_problems_are_reported_at_once(folder: Path) -> None:
    _write(
        folder,
        """
        package: pkg.zip
        users:
          - name: alice
            usrname: alice
            cert: missing.pem
          - name: bob
            pfx: bob.pfx
            targets: [iso]
            days: ten
        """,
    )
    result = CliRunner().invoke(app, ["batch", "users.yaml", "--output", "out"])
    assert result.exit_code == 2
    detail_lines = [line for line in result.stderr.splitlines() if line.startswith("users.yaml:")]
    assert detail_lines == [
        "users.yaml:4:5: user: unknown key 'usrname' (did you mean 'name'?)",
        f"users.yaml:5:11: 'cert': missing.pem does not exist "
        f"(looked for {folder / 'missing.pem'})",
        "users.yaml:8:15: unknown target 'iso' (did you mean 'ios'?)",
        "users.yaml:9:11: 'days' must be a whole number",
    ]
    assert "ERROR: users.yaml: 4 problems in the user list" in result.stderr
    assert "nothing was written" in result.stderr
    assert not (folder / "out").exists()


# --- JSON Schema --------------------------------------------------------------------------------
def _schema() -> dict[str, Any]:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_schema_keys_match_what_the_loader_accepts() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"package", "users"}
    props = schema["properties"]
    assert set(props) == set(userlist.TOP_KEYS)
    assert set(props["ca"]["properties"]) == set(userlist.CA_KEYS)
    assert set(props["defaults"]["properties"]) == set(userlist.DEFAULT_KEYS)
    user = props["users"]["items"]
    assert set(user["properties"]) == set(userlist.USER_KEYS)
    assert user["required"] == ["name"] and user["additionalProperties"] is False
    assert not set(user["properties"]) & userlist.LITERAL_SECRET_KEYS
    single, many = user["properties"]["targets"]["oneOf"]
    assert (
        single["enum"] == many["items"]["enum"] == ["tunnelblick", "ios", "openvpn", "mobileconfig"]
    )


def _demo_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(USERS_YAML)
    return document


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["users"][0].update(usrname="x"), "usrname"),
        (lambda d: d["users"][0].update(password="hunter2"), "password"),
        (lambda d: d["users"][2].update(targets=["tunnelblik"]), "tunnelblik"),
        (lambda d: d["defaults"].update(days="ten"), "ten"),
        (lambda d: d["users"][1].update(name="../evil"), "../evil"),
        (lambda d: d.pop("users"), "users"),
        (lambda d: d["ca"].pop("dir"), "dir"),
    ],
    ids=["unknown-key", "literal-password", "target", "days-type", "name", "no-users", "ca-dir"],
)
def test_schema_validates_the_demo_list_and_rejects_bad_ones(edit: Any, fragment: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(_demo_document())) == []
    bad = _demo_document()
    edit(bad)
    errors = list(validator.iter_errors(bad))
    assert errors, f"schema accepted a bad list ({fragment})"
    assert any(fragment in error.message for error in errors), [e.message for e in errors]
