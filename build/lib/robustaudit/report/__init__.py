"""Writing an evaluation out: results.json, adversarial.npz and a short human summary."""
