"""Store URLs as people and files may see them: the password masked, wherever it was written.

A PostgreSQL URL may carry a password (`postgresql+psycopg://user:SECRET@host/db`, or `?password=` in
its query). Everything that shows or saves a store URL (console lines, command hints, error messages,
logs, exported provenance) goes through `display_url`, so the secret is masked in one place.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url

MASK = "***"
#: Query parameters that libpq (and so psycopg) reads as a password.
_SECRET_QUERY_KEYS = frozenset({"password", "passwd", "sslpassword"})


def display_url(url: str | URL) -> str:
    """``url`` with any password replaced by ``***`` (its user name, host and database kept)."""
    try:
        parsed = make_url(url)
    except Exception:  # unparsable: it never opened a store; keep nothing before an '@'
        text = str(url)
        scheme, sep, rest = text.partition("://")
        return f"{scheme}{sep}{MASK}@{rest.rsplit('@', 1)[1]}" if sep and "@" in rest else text
    secret = {k for k in parsed.query if k.lower() in _SECRET_QUERY_KEYS}
    if secret:
        parsed = parsed.update_query_dict({k: MASK for k in secret})
    return parsed.render_as_string(hide_password=True)


def hide_secrets(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with ``url`` shown as `display_url` and its password masked."""
    text = text.replace(url, display_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, MASK)
    return text


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (so a command hint must not repeat it)."""
    return display_url(url) != _plain(url)


def _secrets(url: str) -> list[str]:
    try:
        parsed = make_url(url)
    except Exception:  # the text between `user:` and `@`, as far as it can be told
        match = re.search(r"://[^:/@]*:([^@]+)@", url)
        return [match.group(1)] if match else []
    values = [parsed.password, *(v for k, v in parsed.query.items() if k.lower() in _SECRET_QUERY_KEYS)]
    return [str(v) for v in values if v and isinstance(v, str)]


def _plain(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=False)
    except Exception:
        return url
