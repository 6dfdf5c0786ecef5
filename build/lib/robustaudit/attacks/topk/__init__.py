"""Ordered top-K targeted attacks: QuadAttack and its baselines CW^K and Adversarial Distillation."""

from robustaudit.attacks.topk.baselines import CWK, AdversarialDistillation
from robustaudit.attacks.topk.ordered import OrderedTopKAttack, TopKResult, ordered_topk_success
from robustaudit.attacks.topk.quad import QuadAttack
from robustaudit.attacks.topk.split import FeatureSplit

TOPK_ATTACKS: dict[str, type[OrderedTopKAttack]] = {"quad": QuadAttack, "cwk": CWK, "ad": AdversarialDistillation}

__all__ = ["CWK", "TOPK_ATTACKS", "AdversarialDistillation", "FeatureSplit", "OrderedTopKAttack", "QuadAttack",
           "TopKResult", "ordered_topk_success"]
