"""Errors raised by robustaudit. `InputError` means the user can fix it; the CLI exits with code 2."""


class InputError(ValueError):
    """Bad user input: the message says what is wrong and how to fix it, in one sentence."""


class AccessError(InputError):
    """An attack needs a higher access level than the model offers (e.g. gradients of a label-only API)."""


class BudgetExhausted(RuntimeError):
    """An attack asked the oracle for a query beyond an example's budget: a bug in the attack."""


class VerificationError(AssertionError):
    """An attack claimed a success that a fresh forward pass or the threat model does not confirm."""


class RemoteError(InputError):
    """A remote model could not answer (unreachable, or still failing after every retry)."""
