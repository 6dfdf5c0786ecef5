"""Defences measured by the same audit (`robustaudit harden`): PGD adversarial training and TRADES against the
white-box threat, PubDef against transfer from public models, and convex training of two-layer ReLU networks
(standard and robust) for tables. Spec: defence-training.md."""
