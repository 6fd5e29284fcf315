"""The batch user list (YAML): parsed safely, validated whole, every problem with file:line:col.

Safety: only YAML's plain types (no tags that build objects), no anchors/aliases (so no
alias-expansion bombs), a size limit, and literal passwords refused (only ``*_env``/``*_file``).
The JSON Schema published by ``ovpn-toolkit schema`` is generated from the same tables
(:mod:`toolkit.batch.schema`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from toolkit.batch.identity import (
    PKCS12_KEYS,
    SignSettings,
    identity_defaults,
    sign_settings,
)
from toolkit.errors import UsageError, UserListError
from toolkit.names import check_display_name, check_name, fold
from toolkit.targets import DEFAULT_TARGETS, TARGET_NAMES

MAX_BYTES = 5 * 1024 * 1024
MAX_USERS = 100_000
LITERAL_SECRET_KEYS = frozenset(
    {
        "password",
        "passphrase",
        "pass",
        "secret",
        "pfx_password",
        "key_password",
        "pfx_passphrase",
        "key_passphrase",
        "ca_password",
        "ca_passphrase",
    }
)

# key -> (kind, description). kinds: str, path, paths, targets, int, bool, key_type, mapping names
TOP_KEYS: dict[str, tuple[str, str]] = {
    "package": ("path", "The Azure P2S package: zip, extracted folder or vpnconfig.ovpn."),
    "output": ("path", "Default output folder (--output wins)."),
    "targets": ("targets", "Default targets for every user."),
    "roots": ("paths", "P2S roots: every certificate must chain to one of them."),
    "ca": ("ca", "Certificate authority that issues certificates for users without any."),
    "defaults": ("defaults", "Defaults for issued certificates, warnings and PKCS#12 passwords."),
    "sign": ("sign", "Sign the .mobileconfig outputs (mobileconfig, ikev2) with this certificate."),
    "contact": ("str", "Who users ask for help, shown in every install guide."),
    "guide": ("bool", "Write each user's install guide INSTALL.html (default: true)."),
    "users": ("users", "The users."),
}
CA_KEYS: dict[str, tuple[str, str]] = {
    "dir": ("path", "The CA folder (made by 'ovpn-toolkit ca init')."),
    "passphrase_env": ("str", "Environment variable holding the CA key's passphrase."),
    "passphrase_file": ("path", "File holding the CA key's passphrase."),
}
DEFAULT_KEYS: dict[str, tuple[str, str]] = {
    "days": ("int", "Validity of issued certificates, in days."),
    "key_type": ("key_type", "Key type of issued certificates."),
    "warn_days": ("int", "Warn when a certificate expires within this many days."),
    **PKCS12_KEYS,
}
USER_KEYS: dict[str, tuple[str, str]] = {
    "name": ("str", "File and bundle name (letters, digits, . _ - @)."),
    "display_name": ("str", "Name shown in OpenVPN Connect; any letters (José García)."),
    "contact": ("str", "Who this user asks for help (default: the file's contact)."),
    "email": ("str", "E-mail for issued certificates (CN becomes this address)."),
    "cert": ("path", "Client certificate, PEM."),
    "key": ("path", "Private key, PEM."),
    "pfx": ("path", "PKCS#12 with certificate and key."),
    "chain": ("paths", "Intermediate certificates, PEM."),
    "passphrase_env": ("str", "Environment variable holding the key's or PKCS#12's passphrase."),
    "passphrase_file": ("path", "File holding the key's or PKCS#12's passphrase."),
    "targets": ("targets", "Targets for this user (default: the file's targets)."),
    "days": ("int", "Validity when issued from the CA."),
    "key_type": ("key_type", "Key type when issued from the CA."),
    "disable_dco": ("bool", "Add disable-dco to the openvpn target (Windows OpenVPN 2.6)."),
    "key_passphrase_env": (
        "str",
        "Encrypt the key inside the profiles with the passphrase in this environment variable.",
    ),
    "key_passphrase_file": ("path", "Like key_passphrase_env, reading the passphrase from a file."),
    **PKCS12_KEYS,
}


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str
    hint: str | None = None

    def render(self, source: str) -> str:
        text = f"{source}:{self.line}:{self.column}: {self.message}"
        return text + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True)
class CASettings:
    dir: Path
    passphrase_env: str | None = None
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class UserEntry:
    name: str
    line: int
    display_name: str | None = None
    email: str | None = None
    cert: Path | None = None
    key: Path | None = None
    pfx: Path | None = None
    chain: tuple[Path, ...] = ()
    passphrase_env: str | None = None
    passphrase_file: Path | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS
    days: int = 365
    key_type: str = "rsa2048"
    disable_dco: bool = False
    key_passphrase_env: str | None = None
    key_passphrase_file: Path | None = None
    pkcs12_passphrase_env: str | None = None
    pkcs12_passphrase_file: Path | None = None
    embed_pkcs12_password: bool = False
    contact: str | None = None

    @property
    def issued_from_ca(self) -> bool:
        return self.cert is None and self.pfx is None


@dataclass(frozen=True)
class UserList:
    source: Path
    package: Path
    output: Path | None
    targets: tuple[str, ...]
    roots: tuple[Path, ...]
    ca: CASettings | None
    warn_days: int
    users: tuple[UserEntry, ...] = field(repr=False)
    sign: SignSettings | None = None
    guide: bool = True

    def env_names(self) -> set[str]:
        """Every environment variable the list names for a passphrase."""
        names = {self.ca.passphrase_env} if self.ca and self.ca.passphrase_env else set()
        for user in self.users:
            names.update(
                n
                for n in (
                    user.passphrase_env,
                    user.key_passphrase_env,
                    user.pkcs12_passphrase_env,
                )
                if n
            )
        return names


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases outright."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                None, None, "anchors and aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Validator:
    def __init__(self, source: Path) -> None:
        self.source = source
        # absolute and normalised: the same file gives the same paths from any cwd and however
        # it was spelled (idempotent re-runs); abspath keeps a symlinked file's own folder
        self.base = Path(os.path.abspath(source)).parent
        self.base_text = str(self.base)
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        line, column = _mark(node)
        self.problems.append(Problem(line, column, message, hint))

    # --- scalar kinds --------------------------------------------------------------------------
    def _scalar(self, node: yaml.Node, key: str, tag: str, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode) or node.tag != tag:
            self.problem(node, f"'{key}' must be {what}")
            return None
        return yaml.safe_load(node.value) if tag != "tag:yaml.org,2002:str" else node.value

    def string(self, node: yaml.Node, key: str) -> str | None:
        value = self._scalar(node, key, "tag:yaml.org,2002:str", "a string")
        if value is not None and not str(value).strip():
            self.problem(node, f"'{key}' is empty")
            return None
        return value if isinstance(value, str) else None

    def integer(self, node: yaml.Node, key: str, low: int = 0, high: int = 36500) -> int | None:
        value = self._scalar(node, key, "tag:yaml.org,2002:int", "a whole number")
        if isinstance(value, int) and not low <= value <= high:
            self.problem(node, f"'{key}' must be between {low} and {high}")
            return None
        return value if isinstance(value, int) else None

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        value = self._scalar(node, key, "tag:yaml.org,2002:bool", "true or false")
        return value if isinstance(value, bool) else None

    def path(self, node: yaml.Node, key: str, *, must_exist: bool = True) -> Path | None:
        text = self.string(node, key)
        if text is None:
            return None
        if text.startswith("~"):
            path = Path(text).expanduser()
            path = path if path.is_absolute() else self.base / path
        else:  # one Path made, not three (a list names two files per user)
            path = Path(os.path.join(self.base_text, text))
        if must_exist and not os.path.exists(path):
            self.problem(node, f"'{key}': {text} does not exist", f"looked for {path}")
        return path

    def paths(self, node: yaml.Node, key: str) -> tuple[Path, ...]:
        if isinstance(node, yaml.ScalarNode):
            single = self.path(node, key)
            return (single,) if single else ()
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"'{key}' must be a list of paths")
            return ()
        return tuple(p for item in node.value if (p := self.path(item, key)) is not None)

    def targets(self, node: yaml.Node, key: str) -> tuple[str, ...] | None:
        items = [node] if isinstance(node, yaml.ScalarNode) else node.value
        not_text = isinstance(node, yaml.ScalarNode) and node.tag != "tag:yaml.org,2002:str"
        if not isinstance(node, yaml.ScalarNode | yaml.SequenceNode) or not items or not_text:
            self.problem(
                node,
                f"'{key}' must be a non-empty list of targets",
                f"choose from: {', '.join(TARGET_NAMES)}",
            )
            return None
        chosen: list[str] = []
        for item in items:
            name = self.string(item, key)
            if name is None:
                continue
            if name not in TARGET_NAMES:
                close = difflib.get_close_matches(name, list(TARGET_NAMES), n=1)
                self.problem(
                    item,
                    f"unknown target '{name}'",
                    f"did you mean '{close[0]}'?"
                    if close
                    else f"choose from: {', '.join(TARGET_NAMES)}",
                )
            elif name not in chosen:
                chosen.append(name)
        return tuple(chosen)

    def key_type(self, node: yaml.Node, key: str) -> str | None:
        from toolkit.ca.keys import KEY_TYPES  # local: the CA's modules load cryptography

        value = self.string(node, key)
        if value is not None and value not in KEY_TYPES:
            self.problem(node, f"'{key}' must be one of {', '.join(KEY_TYPES)}")
            return None
        return value

    # --- mappings --------------------------------------------------------------------------------
    def mapping(
        self, node: yaml.Node, allowed: dict[str, tuple[str, str]], where: str
    ) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{where} must be a mapping (key: value)")
            return {}
        result: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"{where}: keys must be strings")
                continue
            if key in result:
                self.problem(key_node, f"{where}: duplicate key '{key}'")
                continue
            if key.lower() in LITERAL_SECRET_KEYS:
                self.problem(
                    key_node,
                    f"{where}: literal secret '{key}' is not allowed",
                    "name an environment variable (passphrase_env) or a file (passphrase_file)",
                )
                continue
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                self.problem(
                    key_node,
                    f"{where}: unknown key '{key}'",
                    f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}",
                )
                continue
            result[key] = value_node
        return result


def _compose_fast(text: str) -> yaml.Node | None:
    """The node tree by libyaml (~20x faster for a long list), when it is the same tree the
    pure-Python loader builds: no '*' in the text (so no alias to refuse) and no error (the
    Python loader then reports it, with its messages). None: use the Python loader."""
    loader_class = getattr(yaml, "CSafeLoader", None)
    if loader_class is None or "*" in text or not text.strip():
        return None
    try:
        loader = loader_class(text)
        try:
            node: yaml.Node | None = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return None
    return node


def _load_document(source: Path) -> yaml.Node:
    try:
        size = source.stat().st_size
        if size > MAX_BYTES:
            raise UserListError(f"{source}: {size} bytes, over the {MAX_BYTES}-byte limit")
        text = source.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise UserListError(f"{source}: no such file", hint="check the path") from exc
    except UnicodeDecodeError as exc:
        raise UserListError(f"{source}: not UTF-8 text", hint="save the file as UTF-8") from exc
    except OSError as exc:
        raise UserListError(f"{source}: cannot read ({exc.strerror})") from exc
    try:
        node = _compose_fast(text)
        if node is None:
            loader = _NoAliasLoader(text)
            try:
                node = loader.get_single_node()
            finally:
                loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        raise UserListError(
            f"{where}: YAML error: {exc.problem or exc.context}",
            hint="YAML indents with spaces, not tabs: replace the tab at that position"
            if "'\\t'" in str(exc.problem) or "\t" in str(exc.problem)
            else "fix the YAML syntax at that position",
        ) from None
    except yaml.YAMLError as exc:
        raise UserListError(f"{source}: YAML error: {exc}") from None
    if node is None:
        raise UserListError(f"{source}: the file is empty", hint="see docs/reference/users-yaml.md")
    _refuse_tags(node, source)
    return node


# the only tags a node may carry: what YAML resolves plain scalars, lists and mappings to
# ('!!python/object/apply:...' is also under tag:yaml.org,2002:, so a prefix test is not enough)
PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null", "seq", "map")
)


def _refuse_tags(node: yaml.Node, source: Path) -> None:
    """Only the plain YAML types; '!!python/...' or custom tags never build anything."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.tag not in PLAIN_TAGS:
            line, column = _mark(current)
            raise UserListError(
                f"{source}:{line}:{column}: tag '{current.tag}' is not allowed",
                hint="use plain strings, numbers, lists and mappings",
            )
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.extend((key, value))


def load_user_list(source: Path) -> UserList:
    """Parse and validate the whole file; raise one UserListError carrying every problem."""
    root = _load_document(source)
    v = _Validator(source)
    top = v.mapping(root, TOP_KEYS, "top level")
    if "package" not in top and isinstance(root, yaml.MappingNode):
        v.problem(root, "missing required key 'package'", "the Azure P2S package (zip)")
    if "users" not in top and isinstance(root, yaml.MappingNode):
        v.problem(root, "missing required key 'users'", "a list of users with at least a name")
    package = v.path(top["package"], "package") if "package" in top else None
    output = v.path(top["output"], "output", must_exist=False) if "output" in top else None
    targets = (
        v.targets(top["targets"], "targets") if "targets" in top else None
    ) or DEFAULT_TARGETS
    roots = v.paths(top["roots"], "roots") if "roots" in top else ()
    contact = v.string(top["contact"], "contact") if "contact" in top else None
    if contact is not None:
        contact = _contact(v, top["contact"], contact)
    guide = v.boolean(top["guide"], "guide") if "guide" in top else None
    ca = None
    if "ca" in top:
        ca_map = v.mapping(top["ca"], CA_KEYS, "ca")
        if "dir" not in ca_map and isinstance(top["ca"], yaml.MappingNode):
            v.problem(top["ca"], "ca: missing required key 'dir'")
        ca_dir = v.path(ca_map["dir"], "dir") if "dir" in ca_map else None
        env = (
            v.string(ca_map["passphrase_env"], "passphrase_env")
            if "passphrase_env" in ca_map
            else None
        )
        pfile = (
            v.path(ca_map["passphrase_file"], "passphrase_file")
            if "passphrase_file" in ca_map
            else None
        )
        if "passphrase_env" in ca_map and "passphrase_file" in ca_map:
            v.problem(top["ca"], "ca: give passphrase_env or passphrase_file, not both")
        if ca_dir is not None:
            ca = CASettings(ca_dir, env, pfile)
    defaults = v.mapping(top["defaults"], DEFAULT_KEYS, "defaults") if "defaults" in top else {}
    days = (v.integer(defaults["days"], "days", 1) if "days" in defaults else None) or 365
    key_type = (
        v.key_type(defaults["key_type"], "key_type") if "key_type" in defaults else None
    ) or "rsa2048"
    warn_days = v.integer(defaults["warn_days"], "warn_days") if "warn_days" in defaults else None
    user_defaults = identity_defaults(v, top, defaults)
    sign = sign_settings(v, top)
    users: list[UserEntry] = []
    if "users" in top:
        users_node = top["users"]
        if not isinstance(users_node, yaml.SequenceNode) or not users_node.value:
            v.problem(users_node, "'users' must be a non-empty list")
        else:
            if len(users_node.value) > MAX_USERS:
                v.problem(users_node, f"more than {MAX_USERS} users")
            seen: dict[str, int] = {}
            for item in users_node.value:
                user = _user(
                    v,
                    item,
                    targets,
                    days,
                    key_type,
                    has_ca=ca is not None or "ca" in top,
                    defaults=user_defaults,
                )
                if user is not None and user.contact is None and contact is not None:
                    user = replace(user, contact=contact)
                if user is None:
                    continue
                folded = fold(user.name)
                if folded in seen:
                    v.problem(
                        item,
                        f"duplicate user name '{user.name}'",
                        f"the same as the user on line {seen[folded]} (names are compared "
                        "case-insensitively after sanitising)",
                    )
                    continue
                seen[folded] = user.line
                users.append(user)
    if v.problems:
        raise UserListError.from_problems(str(source), v.problems)
    assert package is not None  # noqa: S101 - guaranteed when no problems were found
    return UserList(
        source,
        package,
        output,
        targets,
        roots,
        ca,
        30 if warn_days is None else warn_days,
        tuple(users),
        sign=sign,
        guide=True if guide is None else guide,
    )


def _contact(v: _Validator, node: yaml.Node, text: str) -> str | None:
    from toolkit.guide import check_contact  # local: the guide's module loads jinja2

    try:
        return check_contact(text, "contact")
    except UsageError as exc:
        v.problem(node, exc.message, exc.hint)
        return None


def _user(
    v: _Validator,
    node: yaml.Node,
    targets: tuple[str, ...],
    days: int,
    key_type: str,
    *,
    has_ca: bool,
    defaults: dict[str, Any] | None = None,
) -> UserEntry | None:
    fields = v.mapping(node, USER_KEYS, "user")
    if not isinstance(node, yaml.MappingNode):
        return None
    line, _ = _mark(node)
    if "name" not in fields:
        v.problem(node, "user: missing required key 'name'")
        return None
    name = v.string(fields["name"], "name")
    if name is None:
        return None
    try:
        check_name(name, "name")
    except UsageError as exc:
        v.problem(fields["name"], exc.message, exc.hint)
        return None
    values: dict[str, Any] = {"name": name, "line": line}
    readers: dict[str, Callable[[yaml.Node, str], Any]] = {
        "str": v.string,
        "path": v.path,
        "paths": v.paths,
        "targets": v.targets,
        "int": lambda n, k: v.integer(n, k, 1),
        "bool": v.boolean,
        "key_type": v.key_type,
    }
    for key, value_node in fields.items():
        if key == "name":
            continue
        value = readers[USER_KEYS[key][0]](value_node, key)
        if value is not None:
            values[key] = value
    if "display_name" in values:
        try:
            check_display_name(values["display_name"], "display_name")
        except UsageError as exc:
            v.problem(fields["display_name"], exc.message, exc.hint)
    if "contact" in values:
        values["contact"] = _contact(v, fields["contact"], values["contact"])
    if "email" in values:
        from toolkit.ca.rules import check_email  # local: as KEY_TYPES

        try:
            check_email(values["email"], "email")
        except UsageError as exc:
            v.problem(fields["email"], exc.message, exc.hint)
    has_pem, has_pfx = "cert" in fields, "pfx" in fields
    if has_pem and has_pfx:
        v.problem(node, f"user '{name}': give either cert/key or pfx, not both")
    if "key" in fields and not has_pem:
        v.problem(fields["key"], f"user '{name}': 'key' without 'cert'")
    if not has_pem and not has_pfx and not has_ca:
        v.problem(
            node,
            f"user '{name}' has no credentials and there is no 'ca'",
            "give cert/key or pfx, or add a top-level 'ca: {dir: ...}' to issue one",
        )
    if "passphrase_env" in fields and "passphrase_file" in fields:
        v.problem(node, f"user '{name}': give passphrase_env or passphrase_file, not both")
    if "key_passphrase_env" in fields and "key_passphrase_file" in fields:
        v.problem(node, f"user '{name}': give key_passphrase_env or key_passphrase_file, not both")
    if "pkcs12_passphrase_env" in fields and "pkcs12_passphrase_file" in fields:
        v.problem(
            node, f"user '{name}': give pkcs12_passphrase_env or pkcs12_passphrase_file, not both"
        )
    if not {"pkcs12_passphrase_env", "pkcs12_passphrase_file"} & set(fields):
        for key in ("pkcs12_passphrase_env", "pkcs12_passphrase_file"):
            if defaults and key in defaults:
                values[key] = defaults[key]
    if defaults and "embed_pkcs12_password" in defaults:
        values.setdefault("embed_pkcs12_password", defaults["embed_pkcs12_password"])
    values.setdefault("targets", targets)
    values.setdefault("days", days)
    values.setdefault("key_type", key_type)
    if "chain" in values:
        values["chain"] = tuple(values["chain"])
    return UserEntry(**values)
