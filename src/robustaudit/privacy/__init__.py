"""Privacy audits: what a model leaks about its training data (membership inference)."""

from robustaudit.privacy.membership import ATTACKS, MembershipRecord, Pool, membership_audit

__all__ = ["ATTACKS", "MembershipRecord", "Pool", "membership_audit"]
