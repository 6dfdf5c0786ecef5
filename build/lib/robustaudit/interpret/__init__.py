"""Interpreters (captum) and how much an attack changes what they show."""
