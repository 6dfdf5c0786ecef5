"""Certified robustness: randomized smoothing, and denoised smoothing for black-box models (ZO-AE-DS)."""
