"""OpenVPN Connect on iOS (the OpenVPN 3 core): the target, its keychain variant and its option
tables."""

from toolkit.targets.ios.keychain import IOSKeychainTarget
from toolkit.targets.ios.target import IOSTarget

__all__ = ["IOSKeychainTarget", "IOSTarget"]
