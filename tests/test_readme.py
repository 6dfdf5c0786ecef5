"""The README's "Audit your own model" section runs as written (its pycon blocks are doctests)."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_audit_your_own_model_section_runs() -> None:
    text = README.read_text()
    section = text[text.index("## Audit your own model"):]
    section = section[:section.index("\n## ", 3)]
    blocks = re.findall(r"```pycon\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2
    torch.manual_seed(0)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 6
