"""Explanations at every access level and which one to trust (local function approximation, Han et al. 2022)."""
