"""ovpn-toolkit: Azure VPN Gateway P2S packages to ready-to-import OpenVPN profiles."""

__version__ = "0.1.0"
