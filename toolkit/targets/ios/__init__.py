"""OpenVPN Connect on iOS (the OpenVPN 3 core): the target and its option tables."""

from toolkit.targets.ios.target import IOSTarget

__all__ = ["IOSTarget"]
