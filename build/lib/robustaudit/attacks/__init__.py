"""Attacks: every one is an `Attack`; `get(name)` builds one from the registry, or use the classes directly:
`PGD(steps=50)(model, x, y, threat)`."""

from robustaudit.attacks.base import Attack
from robustaudit.attacks.decision.cgba import CGBA, CGBAH
from robustaudit.attacks.decision.hsja import HopSkipJump
from robustaudit.attacks.decision.rays import RayS
from robustaudit.attacks.decision.surfree import SurFree
from robustaudit.attacks.registry import PRESETS, available, get, resolve
from robustaudit.attacks.score.genetic import Genetic
from robustaudit.attacks.score.nes import NES
from robustaudit.attacks.score.spsa import SPSA
from robustaudit.attacks.score.square import Square
from robustaudit.attacks.whitebox.apgd import APGD, APGDDLR, APGDT
from robustaudit.attacks.whitebox.fab import FABT
from robustaudit.attacks.whitebox.fgsm import FGSM
from robustaudit.attacks.whitebox.joint import JointInterpretation
from robustaudit.attacks.whitebox.pgd import PGD
from robustaudit.attacks.whitebox.pma import PMA

__all__ = [
    "APGD", "APGDDLR", "APGDT", "CGBA", "CGBAH", "FABT", "FGSM", "NES", "PGD", "PMA", "PRESETS", "SPSA", "Attack",
    "Genetic", "HopSkipJump", "JointInterpretation", "RayS", "Square", "SurFree", "available", "get", "resolve",
]
