"""Authentication: hashed bearer tokens, roles, enrolment, per-device rate limit."""
from server.auth.ratelimit import TokenBucketLimiter
from server.auth.tokens import Principal, hash_secret, new_secret, principal, requires

__all__ = ["Principal", "TokenBucketLimiter", "hash_secret", "new_secret", "principal", "requires"]
