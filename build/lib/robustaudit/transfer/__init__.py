"""Transfer (no-box) audits: attacks crafted on public surrogates, and online attacks on a stream."""
