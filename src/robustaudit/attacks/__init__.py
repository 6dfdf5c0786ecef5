"""Attacks: every one is an `Attack`; `get(name)` builds one from the registry."""

from robustaudit.attacks.base import Attack
from robustaudit.attacks.registry import available, get, resolve

__all__ = ["Attack", "available", "get", "resolve"]
