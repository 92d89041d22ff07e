"""Passwords: scrypt at OWASP's parameters, hashed off the gevent hub.

One hash costs ~0.3 s of CPU and 128 MiB of memory (n=2**17, r=8, p=1). On the hub it would
freeze every open stream for that long, so it runs on a dedicated pool of (cores - 1) threads
(hashlib releases the GIL while it works): a burst of sign-ins queues there, bounded in
memory, and one core is always left to the hub. A sign-in for an unknown email hashes a
dummy password, so "no such user" and "wrong password" take the same time and answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from gevent.threadpool import ThreadPool

N, R, P = 2**17, 8, 1
DKLEN = 32
MAXMEM = 132 * 1024 * 1024  # hashlib's default (32 MiB) is below what n=2**17, r=8 needs (128 MiB)
MAX_LENGTH = 1024  # characters; longer "passwords" are refused before any hashing (a 1 MB one is a DoS)

_pool: ThreadPool | None = None


def _threads() -> ThreadPool:
    global _pool
    if _pool is None:
        # One core is left to the hub: a burst of sign-ins queues here instead of
        # starving every open stream of CPU.
        _pool = ThreadPool(max(1, (os.cpu_count() or 2) - 1))
    return _pool


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=DKLEN)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``, computed on the password pool."""
    _check_length(password)
    salt = os.urandom(16)
    digest = _threads().apply(_scrypt, (password, salt, N, R, P))
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str | None) -> bool:
    """True when ``password`` matches ``encoded``. ``None`` (no such user) hashes a dummy."""
    if len(password) > MAX_LENGTH:
        return False
    if encoded is None:
        _threads().apply(_scrypt, (password, b"orion-dummy-salt", N, R, P))
        return False
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = _threads().apply(_scrypt, (password, _unb64(salt), int(n), int(r), int(p)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, _unb64(expected))


def needs_rehash(encoded: str) -> bool:
    """True when ``encoded`` was made with other parameters than today's (rehash at sign-in)."""
    return not encoded.startswith(f"scrypt${N}${R}${P}$")


def _check_length(password: str) -> None:
    if len(password) > MAX_LENGTH:
        raise ValueError(f"A password is at most {MAX_LENGTH} characters (got {len(password):,}).")
