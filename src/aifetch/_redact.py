"""Redaction of secrets in URLs, headers and free text, before anything is logged or raised.

Pure string functions: values in, values out. They run on every logged request and every
error message, so each one makes a single pass and copies only the parts it changes.

The rule they serve (STYLE.md, principle 5): no API key, ``Authorization`` value or
``?key=`` query value ever appears in a message, a repr or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_plus

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_KEYS",
    "bearer_fingerprint",
    "is_sensitive_header",
    "redact_headers",
    "redact_text",
    "redact_url",
    "request_secrets",
]

REDACTED: Final = "[REDACTED]"

# Header names (lower-case) whose values are credentials. "x-api-key" covers Anthropic;
# "openai-organization" and "openai-project" are identifiers, not secrets, so they stay
# readable for debugging. Names matched by pattern rather than listed here are handled in
# is_sensitive_header().
SENSITIVE_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "set-cookie",
        "x-goog-api-key",
    }
)

# Query keys (compared after percent-decoding and lower-casing) whose values are secrets.
# "key" is Google's API-key parameter; "sig"/"signature" and the x-amz-/x-goog- names carry
# signed-URL credentials (Azure SAS, S3 and GCS presigned URLs). "code" is included because an
# OAuth 2.0 authorization code (RFC 6749 §4.1.2) can be exchanged for a token; no AI API uses
# a harmless parameter called "code", so hiding it costs nothing.
SENSITIVE_QUERY_KEYS: Final[frozenset[str]] = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "api-key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "password",
        "sig",
        "signature",
        "code",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-credential",
        "x-goog-signature",
        "x-goog-credential",
    }
)

_NAME_SEGMENTS = re.compile(r"[-_.]")


@lru_cache(maxsize=1024)
def _sensitive_lower(name: str) -> bool:
    if name in SENSITIVE_HEADERS:
        return True
    if name.endswith(("-key", "_key")) or "secret" in name or "password" in name:
        return True
    # Any segment containing "token" (x-auth-token, x-amz-security-token, x-accesstoken),
    # except the plural "tokens": rate-limit counters such as x-ratelimit-remaining-tokens and
    # anthropic-ratelimit-input-tokens-limit are numbers needed to debug a 429, not secrets.
    if "token" in name:
        return any("token" in seg and seg != "tokens" for seg in _NAME_SEGMENTS.split(name))
    return False


def is_sensitive_header(name: str) -> bool:
    """True if a header called *name* (any case) carries a credential and must be hidden."""
    # The cache is keyed on the lower-cased name; it is bounded, so hostile header names can
    # only evict entries, never grow memory.
    return _sensitive_lower(name.lower())


def redact_headers(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Copy of *items* with the value of every sensitive header replaced by REDACTED.

    Names, order and repeated headers are kept as given.
    """
    return [(name, REDACTED if is_sensitive_header(name) else value) for name, value in items]


def _is_sensitive_key(raw_key: str) -> bool:
    # Decode first so that api%5Fkey or API_KEY cannot slip past; form encoding ("+" for
    # space) is decoded too because servers built on form parsers read keys that way.
    key = unquote_plus(raw_key) if ("%" in raw_key or "+" in raw_key) else raw_key
    return key.strip().lower() in SENSITIVE_QUERY_KEYS


# WHATWG URL: "&" separates query pairs (";" does not). "?" is split on as well, which no
# parser does: a URL glued together twice ("...?a=1?key=s") still shows "key=s" to a reader,
# and single-page apps route with "#/callback?access_token=..." in the fragment.
_PAIR_SEPARATORS = re.compile(r"([&?])")


def _redact_pairs(part: str) -> str:
    """Redact sensitive values in an ``a=1&b=2`` string, leaving every other byte alone."""
    if "=" not in part:
        return part
    # The capturing group keeps the separators in the list, at odd indexes.
    pieces = _PAIR_SEPARATORS.split(part)
    changed = False
    for i in range(0, len(pieces), 2):
        key, eq, value = pieces[i].partition("=")
        # An empty value hides nothing, and showing "key=" tells the reader it was empty.
        if eq and value and _is_sensitive_key(key):
            pieces[i] = f"{key}={REDACTED}"
            changed = True
    return "".join(pieces) if changed else part


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _redact_userinfo(url: str) -> str:
    """Replace ``user:pass@`` in the authority (RFC 3986 §3.2.1) with ``[REDACTED]@``."""
    m = _SCHEME.match(url)
    start = m.end() if m else 0
    if url.startswith("//", start):
        start += 2
    else:
        # No authority marker: "user:pass@host/x" typed without a scheme parses as scheme
        # "user". Treat everything before an "@" in the first segment as userinfo, so the
        # malformed input fails closed.
        start = 0
    end = len(url)
    for sep in "/?#":
        pos = url.find(sep, start)
        if pos != -1 and pos < end:
            end = pos
    # The last "@" ends the userinfo: a raw "@" inside a password is common in hand-written
    # URLs, and cutting at the last one hides all of it. A backslash is deliberately not
    # treated as an authority end, so "user:pa\ss@host" is hidden whole.
    at = url.rfind("@", start, end)
    if at == -1:
        return url
    return f"{url[:start]}{REDACTED}{url[at:]}"


def _redact_url(url: str) -> str:
    if "@" not in url and "=" not in url:
        return url  # the common case: nothing that could hold a secret
    out = _redact_userinfo(url)
    hash_pos = out.find("#")
    head, fragment = (out, "") if hash_pos == -1 else (out[:hash_pos], out[hash_pos:])
    q_pos = head.find("?")
    if q_pos != -1:
        head = head[: q_pos + 1] + _redact_pairs(head[q_pos + 1 :])
    # Fragments are never sent, but OAuth's implicit flow (RFC 6749 §4.2.2) puts
    # access_token=... there, and a logged URL may be pasted anywhere.
    if fragment:
        fragment = "#" + _redact_pairs(fragment[1:])
    out = head + fragment
    # Hand back the caller's own object when nothing changed, so callers can test identity.
    return url if out == url else out


def redact_url(url: str) -> str:
    """*url* with userinfo and sensitive query (and fragment) values replaced by REDACTED.

    Everything else is kept byte for byte: no re-encoding, no reordering, no normalising.
    Never raises; if the input cannot be handled, the whole URL is hidden.
    """
    try:
        return _redact_url(url)
    except Exception:
        # Fail closed: a redactor that raises would turn a logging call into an outage, and
        # one that returns its input on error would leak.
        return REDACTED


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """*text* with every occurrence of each known secret value replaced by REDACTED.

    Secrets shorter than 4 characters are ignored: they would match ordinary text and hiding
    them protects nothing.
    """
    wanted = {s for s in secrets if len(s) >= 4}
    if not wanted:
        return text
    present = [s for s in wanted if s in text]
    if not present:
        return text
    # One pass with the longest alternatives first, so a secret that contains another is
    # hidden whole and REDACTED itself is never rewritten by a later secret.
    present.sort(key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, present)))
    return pattern.sub(REDACTED, text)


def request_secrets(headers: Iterable[tuple[str, str]], url: str) -> list[str]:
    """The secret values a request carries: sensitive header values (and the credential
    after an ``Authorization`` scheme) and sensitive query values, for ``redact_text`` on
    text a server sent back (a provider may quote the key it was given in its error)."""
    found: list[str] = []
    for name, value in headers:
        if is_sensitive_header(name):
            found.append(value)
            _, space, credential = value.strip().partition(" ")
            if space:
                found.append(credential.strip())
    query = url.partition("#")[0].partition("?")[2]
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if eq and value and _is_sensitive_key(key):
            found.append(value)
            found.append(unquote_plus(value))
    return found


_MIN_FINGERPRINT_LEN = 20
# A short lower-case type marker such as "sk-" or "pk-" names the kind of key, not the key.
_KEY_PREFIX = re.compile(r"[a-z]{2,4}-")


def bearer_fingerprint(value: str) -> str:
    """A safe-to-log hint of a key: ``"sk-…a1b2"``, or REDACTED when the key is too short.

    Accepts a bare key or an ``Authorization`` value (``"Bearer sk-..."``). Only the last 4
    characters and a short type marker are shown, and only for keys of at least 20
    characters, so at least 12 characters of the key always stay hidden.
    """
    key = value.strip()
    scheme, space, rest = key.partition(" ")
    if space and scheme.lower() in ("bearer", "basic", "token"):
        key = rest.strip()
    if len(key) < _MIN_FINGERPRINT_LEN:
        return REDACTED
    m = _KEY_PREFIX.match(key)
    prefix = m.group() if m else ""
    return f"{prefix}…{key[-4:]}"
