"""Secrets (tokens, cookies) come only from the environment and must never reach a log, an error
message or a file: `redact` replaces their values wherever text leaves the process."""

from __future__ import annotations

import os

SECRET_ENV = ("HF_TOKEN", "GITHUB_TOKEN", "TIANCHI_COOKIE", "TIANCHI_CSRF_TOKEN")


def redact(text: str) -> str:
    """`text` with the value of every secret environment variable (and each cookie value) replaced by ***."""
    secrets: list[str] = []
    for name in SECRET_ENV:
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        secrets.append(value)
        for part in value.split(";"):
            _, _, cookie_value = part.partition("=")
            if len(cookie_value.strip()) >= 6:
                secrets.append(cookie_value.strip())
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
