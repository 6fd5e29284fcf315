"""The install guide (INSTALL.html) in a real browser: Debian's chromium, driven by selenium.

The demo (``python -m toolkit demo``) writes real guides for alice, bob, carol and dave; then
dave's key gets a passphrase and a user with the longest allowed names is added (erin, iPhone and
computer) and one with the identity in the iPhone keychain (frank: a .ovpn12, then a keyless
profile), and the batch re-run, so the guides cover every target mix, the passphrase steps and
escaping. Each guide is loaded from its file:// URL at a phone width (390 px, mobile emulation, so
the viewport meta tag matters) and a desktop width (1280 px) and checked for: no horizontal
overflow, nothing loaded (no resource entries, no CSP violations, no console messages), links
that are links, file names that exist in the user's folder, profile names the apps show, the
passphrase only when the key has one, and the technical details only in the administrator part.

One browser serves the whole module and every guide is loaded once per view; the tests then read
those snapshots. Screenshots of every guide at 390 px go to pytest's temporary folder
(``guide-screens*``) for a human look. Requests are seen in chromedriver's performance log
(``Network.requestWillBeSent``), which also shows requests the CSP then blocks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]

GUIDE_CSP = "default-src 'none'; style-src 'unsafe-inline'"
EXTERNAL_LINKS = {
    "https://tunnelblick.net/",
    "https://apps.apple.com/app/openvpn-connect/id590379981",
    "https://openvpn.net/community-downloads/",
}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PAPER = {"width": 720, "height": 1000, "deviceScaleFactor": 1, "mobile": False}  # A4 less margins
VIEWS: dict[str, tuple[dict[str, Any], str]] = {
    "390px": (PHONE, ""),
    "1280px": (DESKTOP, ""),
    "print": (PAPER, "print"),
}
MIN_TAP = 44  # px: Apple's and Google's smallest comfortable touch target
PROTECTED_USER = "dave"
# a user the demo lacks: longest names, characters to escape, an iPhone and a computer, and a
# contact of her own (the others get the demo's contact)
ERIN = "erin.fabrikam-remote-engineering-westeurope-gateway-01"
ERIN_DISPLAY = "Erin<&>'Fabrikam\"" + "RemoteEngineeringWestEuropeGateway" * 2 + "(P2S)"
ERIN_CONTACT = 'Ops <ops@fabrikam.example> & "Desk" ' + "WestEuropeRemoteEngineering" * 3
DEMO_CONTACT = "Contoso IT desk, it@contoso.example (DEMO)"
KEYCHAIN = "frank"  # the identity in the iPhone keychain: two files and a password
ERIN_YAML = f"""\
  - name: {ERIN}
    email: erin@fabrikam.example
    display_name: '{ERIN_DISPLAY.replace("'", "''")}'
    contact: '{ERIN_CONTACT.replace("'", "''")}'
    targets: [ios, openvpn, ikev2]
  - name: {KEYCHAIN}
    email: frank@contoso.example
    targets: [ios-keychain]
"""

# Collects CSP violations from the first moment of every page (DevTools scripts ignore the CSP).
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""
SNAPSHOT = """
const root = document.documentElement;
const text = id => { const e = document.getElementById(id); return e ? e.innerText : null; };
const csp = document.querySelector('meta[http-equiv="Content-Security-Policy"]');
return {
  innerWidth: window.innerWidth,
  clientWidth: root.clientWidth,
  scrollWidth: root.scrollWidth,
  wide: [...document.body.querySelectorAll('*')]
      .filter(e => e.getBoundingClientRect().right > root.clientWidth + 0.5)
      .map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 40)),
  resources: performance.getEntriesByType('resource').map(e => e.name),
  violations: window.__cspViolations || ['(watcher missing)'],
  csp: csp ? csp.content : null,
  links: [...document.querySelectorAll('a')].map(a => {
    const r = a.getBoundingClientRect();
    return {href: a.getAttribute('href'), text: a.innerText, width: r.width, height: r.height};
  }),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  files: [...document.querySelectorAll('code.file')].map(e => e.textContent.trim()),
  body: document.body.innerText,
  steps: [...document.querySelectorAll('ol')].map(e => e.innerText).join('\\n'),
  sections: {mac: text('mac'), iphone: text('iphone'), keychain: text('iphone-keychain'),
             windows: text('windows'), linux: text('linux'), admin: text('admin')},
  navShown: [...document.querySelectorAll('nav')].some(e => getComputedStyle(e).display !== 'none'),
};
"""


# --- the demo output -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Guide:
    user: str
    folder: Path  # the user's folder: profiles/<user>

    @property
    def html(self) -> Path:
        return self.folder / "INSTALL.html"

    def key_protected(self) -> bool:
        """Read from the profiles themselves, not from what the guide claims."""
        return any(
            "ENCRYPTED PRIVATE KEY" in p.read_text() or "Proc-Type: 4,ENCRYPTED" in p.read_text()
            for p in self.folder.rglob("*.ovpn")
        )

    def names_in_folder(self) -> set[str]:
        return {p.name for p in self.folder.rglob("*")}


def _toolkit(*args: str, cwd: Path) -> None:
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    _toolkit("demo", "-o", str(root), cwd=root)
    # dave's key gets a passphrase: his guide must then explain it on every device
    (root / "secrets" / "dave-key.pass").write_text("dave key words for the guide test\n")
    users = root / "users.yaml"
    text = users.read_text()
    assert text.count("  - name: dave\n") == 1
    text = text.replace(
        "  - name: dave\n", "  - name: dave\n    key_passphrase_file: secrets/dave-key.pass\n"
    )
    users.write_text(text.rstrip("\n") + "\n" + ERIN_YAML)
    _toolkit("batch", str(users), cwd=root)
    return root / "profiles"


@pytest.fixture(scope="module")
def guides(demo: Path) -> list[Guide]:
    found = [Guide(p.parent.name, p.parent) for p in sorted(demo.glob("*/INSTALL.html"))]
    assert [g.user for g in found] == ["alice", "bob", "carol", "dave", ERIN, KEYCHAIN]
    protected = [g.user for g in found if g.key_protected()]
    assert protected == [PROTECTED_USER]
    return found


@pytest.fixture(scope="module")
def manifest(demo: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((demo / "manifest.json").read_text())
    return {u["name"]: u for u in data["users"]}


# --- the browser ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is missing (Debian packages chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # the explicit driver path skips Selenium Manager; offline in case a version still asks it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "1")
        service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_CSP})
        yield driver
    finally:
        driver.quit()


def _load(driver: Any, page: Path, metrics: dict[str, Any], media: str = "") -> dict[str, Any]:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": media})
    driver.get_log("browser")  # drop whatever an earlier page left
    driver.get_log("performance")
    driver.get(page.as_uri())
    snapshot: dict[str, Any] = driver.execute_script(SNAPSHOT)
    snapshot["console"] = [entry["message"] for entry in driver.get_log("browser")]
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    snapshot["requests"] = [
        e["params"]["request"]["url"]
        for e in events
        if e["method"] == "Network.requestWillBeSent"
        and e["params"]["request"]["url"] != page.as_uri()
    ]
    return snapshot


def _screenshot(driver: Any, target: Path) -> None:
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    target.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def pages(
    browser: Any, guides: list[Guide], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every guide in every view, loaded once: {user: {view: snapshot}}."""
    screens = tmp_path_factory.mktemp("guide-screens")
    loaded: dict[str, dict[str, dict[str, Any]]] = {}
    for guide in guides:
        loaded[guide.user] = {}
        for view, (metrics, media) in VIEWS.items():
            loaded[guide.user][view] = _load(browser, guide.html, metrics, media)
            if view == "390px":
                _screenshot(browser, screens / f"{guide.user}-390.png")
    return loaded


def _assert_fits(snap: dict[str, Any], width: int) -> None:
    # mobile emulation zooms an overflowing page out to fit, widening innerWidth: pin it
    assert snap["innerWidth"] == width, snap["innerWidth"]
    # clientWidth is innerWidth less a desktop scroll bar
    assert snap["scrollWidth"] <= snap["clientWidth"] <= snap["innerWidth"], snap["wide"]
    assert snap["wide"] == []


def _assert_loads_nothing(snap: dict[str, Any]) -> None:
    assert snap["csp"] == GUIDE_CSP
    assert snap["requests"] == []
    assert snap["resources"] == []
    assert snap["violations"] == []
    assert snap["console"] == []


def _phone(pages: dict[str, dict[str, dict[str, Any]]], guide: Guide) -> dict[str, Any]:
    return pages[guide.user]["390px"]


# --- the guides ----------------------------------------------------------------------------------
@pytest.mark.parametrize("view", list(VIEWS))
def test_nothing_overflows(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide], view: str
) -> None:
    for guide in guides:
        _assert_fits(pages[guide.user][view], VIEWS[view][0]["width"])


@pytest.mark.parametrize("view", list(VIEWS))
def test_nothing_is_loaded(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide], view: str
) -> None:
    for guide in guides:
        _assert_loads_nothing(pages[guide.user][view])


def test_device_menu_on_screen_only_when_there_is_a_choice(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        devices = [k for k, text in snap["sections"].items() if text and k != "admin"]
        assert snap["navShown"] == (len(devices) > 1), (guide.user, devices)
        assert pages[guide.user]["print"]["navShown"] is False


def test_links_are_real_links_with_large_targets(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        assert snap["links"], guide.user
        for link in snap["links"]:
            href = link["href"]
            assert href, (guide.user, link)
            if href.startswith("#"):
                assert href[1:] in snap["ids"], (guide.user, href)
            else:
                assert href in EXTERNAL_LINKS, (guide.user, href)
            assert link["height"] >= MIN_TAP and link["width"] >= MIN_TAP, (guide.user, link)
        external = {link["href"] for link in snap["links"]} & EXTERNAL_LINKS
        assert ("https://tunnelblick.net/" in external) == (snap["sections"]["mac"] is not None)
        app_store = "https://apps.apple.com/app/openvpn-connect/id590379981"
        iphone = snap["sections"]["iphone"] or snap["sections"]["keychain"]
        assert (app_store in external) == (iphone is not None)


def test_every_file_named_is_in_the_users_folder_and_every_delivery_is_named(
    pages: dict[str, dict[str, dict[str, Any]]],
    guides: list[Guide],
    manifest: dict[str, dict[str, Any]],
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        shown = set(snap["files"])
        assert shown, guide.user
        for name in shown:
            assert "/" not in name and "\\" not in name, (guide.user, name)
            assert name in guide.names_in_folder(), (guide.user, name)
        # what the admin sends (the manifest's send list, less the guide): exactly what it names
        send = manifest[guide.user]["send"]
        assert send[-1]["path"] == f"{guide.user}/INSTALL.html"
        delivered = [Path(item["path"]).name for item in send[:-1]]
        assert len(set(delivered)) == len(delivered), delivered  # the platform is in the name
        unpacked = {n for n in shown if n.endswith(".tblk")}  # what the Mac makes of the zip
        assert {f"{n}.zip" for n in unpacked} <= set(delivered)
        assert set(delivered) == shown - unpacked, (guide.user, set(delivered) ^ shown)
        assert str(guide.folder) not in snap["body"]


def test_the_contact_is_shown_as_given(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        contact = ERIN_CONTACT if guide.user == ERIN else DEMO_CONTACT
        assert f"Questions? Ask {contact}." in snap["body"]
        assert f"Contact {contact}." in snap["body"]
        if guide.user != ERIN:
            assert ERIN_CONTACT not in snap["body"]


def _ios_display_name(folder: Path) -> str:
    for line in next(folder.glob("ios*/*.ovpn")).read_text().splitlines():
        if line.startswith("# OVPN_ACCESS_SERVER_PROFILE="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{folder}: no display name in the ios profile")


def test_steps_use_the_names_the_apps_show(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        sections = _phone(pages, guide)["sections"]
        bundles = sorted(guide.folder.glob("tunnelblick/*.tblk"))
        if bundles:
            # Tunnelblick lists a configuration under its bundle's folder name
            assert f"Connect {bundles[0].stem}" in sections["mac"]
        else:
            assert sections["mac"] is None
        # OpenVPN Connect shows the profile's OVPN_ACCESS_SERVER_PROFILE name
        phone = sections["iphone"] if (guide.folder / "ios").is_dir() else sections["keychain"]
        assert f"Tap the switch next to {_ios_display_name(guide.folder)}" in phone
        computers = sorted(guide.folder.glob("openvpn/*.ovpn"))
        if computers:
            # OpenVPN GUI and NetworkManager name a profile after its file
            stem = computers[0].stem
            assert f"{stem}, then Connect" in sections["windows"]
            assert f"Switch on the VPN named {stem}" in sections["linux"]
            assert f"sudo openvpn --config {computers[0].name}" in sections["linux"]
            assert "sudo" not in sections["windows"]
        else:
            assert sections["windows"] is None and sections["linux"] is None


def test_passphrase_only_when_the_key_has_one(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        protected = guide.key_protected()
        assert ("key passphrase" in snap["body"]) == protected, guide.user
        if protected:
            for device, text in snap["sections"].items():
                if text is not None and device != "admin":
                    assert "key passphrase" in text, (guide.user, device)
        assert "dave key words" not in snap["body"]


def test_technical_details_only_for_the_administrator_at_the_end(
    pages: dict[str, dict[str, dict[str, Any]]],
    guides: list[Guide],
    manifest: dict[str, dict[str, Any]],
) -> None:
    for guide in guides:
        snap = _phone(pages, guide)
        profile = next(guide.folder.glob("ios*/*.ovpn")).read_text()
        gateway = re.search(r"^remote (\S+)", profile, re.M)
        assert gateway is not None
        record = manifest[guide.user]
        admin = snap["sections"]["admin"].replace("\n", "")
        for value in (gateway[1], record["certificate"]["thumbprint_sha1"]):
            assert value in admin, (guide.user, value)
            assert value not in snap["steps"], (guide.user, value)
        assert record["certificate"]["not_after"][:10] in admin
        assert snap["body"].rstrip().endswith(snap["sections"]["admin"].rstrip())


# --- the checks themselves can fail --------------------------------------------------------------
BAD_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta http-equiv="Content-Security-Policy" content="{csp}"></head>
<body><p><code>azuregateway-{long}.vpn.azure.com</code></p>
<img src="pixel.svg" alt=""><a>no target</a></body></html>
"""


def test_the_checks_catch_overflow_a_load_and_a_dead_link(browser: Any, tmp_path: Path) -> None:
    # only local files: the machine's network is closed and must stay untouched
    (tmp_path / "pixel.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    open_page = tmp_path / "open.html"
    open_page.write_text(BAD_PAGE.format(csp="default-src *", long="9c2cf276" * 12))
    snap = _load(browser, open_page, PHONE)
    # chromium zooms such a page out (innerWidth grows to scrollWidth): scrollWidth <= innerWidth
    # alone would pass, the pinned width and clientWidth catch it
    assert snap["scrollWidth"] > snap["clientWidth"]
    with pytest.raises(AssertionError):
        _assert_fits(snap, PHONE["width"])
    assert [r for r in snap["requests"] if r.endswith("/pixel.svg")]
    assert [link["href"] for link in snap["links"]] == [None]

    strict = tmp_path / "strict.html"
    strict.write_text(BAD_PAGE.format(csp=GUIDE_CSP, long=""))
    snap = _load(browser, strict, PHONE)
    _assert_fits(snap, PHONE["width"])
    assert snap["violations"] and snap["violations"][0].startswith("img-src")
    with pytest.raises(AssertionError):
        _assert_loads_nothing(snap)


def test_the_keychain_guide_has_two_steps_and_the_password_by_another_channel(
    pages: dict[str, dict[str, dict[str, Any]]], guides: list[Guide]
) -> None:
    for guide in guides:
        section = _phone(pages, guide)["sections"]["keychain"]
        identities = sorted(guide.folder.glob("ios-keychain/*.ovpn12"))
        if not identities:
            assert section is None, guide.user
            continue
        assert guide.user == KEYCHAIN and section is not None
        identity, profile = identities[0].name, identities[0].with_suffix(".ovpn").name
        display = _ios_display_name(guide.folder)
        first, second = section.index("Step 1"), section.index("Step 2")
        # step 1: the identity and its password; step 2: the profile, then the certificate
        assert first < section.index(identity) < section.index("type the password") < second
        assert identity not in section[second:].split("Good to know")[0]
        assert section.index(profile, second) < section.index(f"pick {display}")
        assert "Delete Profile" in section  # the old profile goes first
        assert "password your administrator gives you separately" in section
        assert not any(p.name in _phone(pages, guide)["body"] for p in guide.folder.rglob("*.txt"))
