"""Ownership verification of (sparse) models: a signature carved into a pruned layer's mask topology (white-box),
a trigger set trained into the model (black-box), and the removal attacks an owner measures them against
(Chen et al., NeurIPS 2021, "You are caught stealing my winning lottery ticket!")."""
