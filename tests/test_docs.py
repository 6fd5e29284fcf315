"""The docs stay true to the code: the generated CLI reference is current, the README's two
set-up commands are the ones CI runs, and every relative link in README.md and docs/ resolves."""

from __future__ import annotations

import difflib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from toolkit.batch.userlist import CA_KEYS, DEFAULT_KEYS, TOP_KEYS, USER_KEYS
from toolkit.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "reference" / "cli.md"
# the first makes the venv the second runs in (a system Python may refuse pip install)
DEMO_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && python -m pip install . && ovpn-toolkit demo"
)
TEST_COMMAND = "python -m pip install -e '.[test]' && python -m pytest"
MARKDOWN = sorted([README, ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
TITLE = r"""(?:\s+(?:"[^"]*"|'[^']*'))?"""
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?" + TITLE + r"\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?" + TITLE + r"\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def _generator() -> ModuleType:
    path = ROOT / "tools" / "gen_cli_reference.py"
    spec = importlib.util.spec_from_file_location("gen_cli_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- (a) the generated CLI reference ------------------------------------------------------------
def test_cli_reference_is_up_to_date() -> None:
    expected = _generator().render()
    current = CLI_REFERENCE.read_text("utf-8") if CLI_REFERENCE.exists() else ""
    if current != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/reference/cli.md",
                    "generated",
                )
            )[:40]
        )
        pytest.fail(
            "docs/reference/cli.md is out of date: run `python tools/gen_cli_reference.py`\n"
            + diff,
            pytrace=False,
        )


def test_cli_reference_covers_every_command_and_option() -> None:
    import typer.main

    from toolkit.cli import app

    text = _generator().render()
    sections = {match.group(1): match.start() for match in re.finditer(r"^## (.+)$", text, re.M)}

    def walk(command: object, path: list[str]) -> None:
        heading = " ".join(path)
        assert heading in sections, f"no section for `{heading}`"
        start = sections[heading]
        end = min((s for s in sections.values() if s > start), default=len(text))
        body = text[start:end]
        for param in getattr(command, "params", []):
            if getattr(param, "param_type_name", "") == "option":
                assert f"`{param.opts[0]}`" in body, f"{heading}: {param.opts[0]} missing"
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), ["ovpn-toolkit"])


# --- (b) the README's first screen and CI ----------------------------------------------------
def test_readme_first_screen_has_the_two_setup_commands() -> None:
    first_screen = README.read_text("utf-8").splitlines()[:40]
    lines = [line.strip() for line in first_screen]
    assert DEMO_COMMAND in lines, f"README's first 40 lines lack the line {DEMO_COMMAND!r}"
    assert TEST_COMMAND in lines, f"README's first 40 lines lack the line {TEST_COMMAND!r}"
    assert lines.index(DEMO_COMMAND) < lines.index(TEST_COMMAND), "demo first, then the tests"


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text("utf-8").splitlines()]
    assert TEST_COMMAND in ci_lines, ".ci/run must run the README's test command verbatim"


# --- (c) links -------------------------------------------------------------------------------
def _relative_links(text: str) -> list[str]:
    text = FENCE.sub("", text)
    text = INLINE_CODE.sub("", text)
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]


def test_link_extraction() -> None:
    sample = (
        "See [a](docs/a.md#x), ![img](img.png 'x') and [web](https://example.com).\n"
        "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[ref]: ../ref.md\n[top](#anchor)\n"
    )
    assert _relative_links(sample) == ["docs/a.md#x", "img.png", "../ref.md"]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    if not page.exists():
        pytest.fail(f"{page.relative_to(ROOT)} is missing")
    broken = []
    for target in _relative_links(page.read_text("utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken relative links: {broken}"


# --- reference pages that list what the code defines ---------------------------------------------
def test_exit_codes_page_lists_every_exit_code() -> None:
    text = (ROOT / "docs" / "reference" / "exit-codes.md").read_text("utf-8")
    for code in ExitCode:
        assert re.search(rf"^\|\s*`?{int(code)}`?\s*\|", text, re.M), f"exit code {int(code)}"


def test_users_yaml_page_documents_every_key() -> None:
    text = (ROOT / "docs" / "reference" / "users-yaml.md").read_text("utf-8")
    for table in (TOP_KEYS, CA_KEYS, DEFAULT_KEYS, USER_KEYS):
        for key in table:
            assert f"`{key}`" in text, f"users-yaml.md does not document the key '{key}'"
