"""Authentication: hashed bearer tokens, roles, enrolment, per-device rate limit."""
from server.auth.ratelimit import RateLimits
from server.auth.tokens import Principal, hash_secret, new_secret, principal, requires

__all__ = ["Principal", "RateLimits", "hash_secret", "new_secret", "principal", "requires"]
