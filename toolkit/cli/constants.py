"""Values the command line shows in its help and defaults, defined here so that loading the CLI
(``ovpn-toolkit --help``) imports none of the core's heavy modules (cryptography, jinja2, yaml).
``tests/test_cli.py`` checks every one against the core's own value."""

from __future__ import annotations

# toolkit.targets.TARGETS, in its order
TARGET_NAMES = ("tunnelblick", "ios", "ios-keychain", "openvpn", "mobileconfig", "ikev2")
DEFAULT_TARGETS = ("tunnelblick", "ios")  # toolkit.targets.DEFAULT_TARGETS
KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096")  # toolkit.ca.KEY_TYPES
DEFAULT_ROOT_CN = "P2S Root CA"  # toolkit.ca.DEFAULT_ROOT_CN
DEFAULT_ROOT_DAYS = 3650  # toolkit.ca.DEFAULT_ROOT_DAYS
DEFAULT_CLIENT_DAYS = 365  # toolkit.ca.authority.DEFAULT_CLIENT_DAYS
DEFAULT_WARN_DAYS = 30  # toolkit.ca.DEFAULT_WARN_DAYS
GATEWAY_PLACEHOLDER = "<gateway>"  # toolkit.ca.azure.GATEWAY_PLACEHOLDER
RG_PLACEHOLDER = "<resource-group>"  # toolkit.ca.azure.RG_PLACEHOLDER
