"""What a reviewer needs to sign a report off: which model (sha256, or how it was loaded), which data (sha256,
size), normalisation, threat model, every setting, versions, date and seed; and the caveats its numbers carry."""

from __future__ import annotations

import datetime
import platform
from typing import Any

from robustaudit.stats import clopper_pearson
from robustaudit.version import __version__


def provenance(*, model: str, model_sha256: str | None, data_sha256: str | None, n: int, seed: int | None,
               settings: dict[str, Any], model_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The identity block every command's JSON carries under "provenance"."""
    import torch

    return {"model": model, "model_sha256": model_sha256, "data_sha256": data_sha256, "n": n, "seed": seed,
            "model_options": model_options or {}, "settings": settings, "robustaudit_version": __version__,
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def caveats(*, attacks: list[str] | None = None, clean_correct: int | None = None, n: int | None = None,
            classes: int | None = None, certify: dict[str, float] | None = None) -> list[str]:
    """The caveats a figure needs: an attack set weaker than `standard`; a clean accuracy no better than chance
    (labels and classes probably do not match); for randomized smoothing, the largest radius n samples can
    certify at all."""
    out = []
    if attacks is not None:
        from robustaudit.attacks.registry import PRESETS

        # `fast` is tested to be at least as strong as `standard`; either, or more, is not weaker
        if not any(set(PRESETS[p]) <= set(attacks) for p in ("standard", "fast")):
            out.append(f"the attack set ({', '.join(attacks)}) is weaker than `standard` (AutoAttack-grade) or "
                       "`fast`: the robust accuracy is an upper bound that a stronger audit may lower")
    if clean_correct is not None and n and classes and classes >= 2 and clopper_pearson(clean_correct, n)[0] <= 1 / \
            classes:
        out.append(f"clean accuracy {clean_correct}/{n} is no better than chance (1/{classes}): labels and classes "
                   "probably do not match")
    if certify is not None:
        from scipy.stats import norm

        # all n noisy samples on one class: the one-sided lower bound on its probability is alpha^(1/n)
        best = certify["sigma"] * float(norm.ppf(certify["alpha"] ** (1 / certify["n"])))
        out.append(f"with n={int(certify['n'])} noise samples and alpha={certify['alpha']:g} no radius above "
                   f"{best:.3f} can be certified: certified accuracy is 0 beyond it by construction")
    return out
