from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifetch._redact import (
    REDACTED,
    SENSITIVE_HEADERS,
    SENSITIVE_QUERY_KEYS,
    bearer_fingerprint,
    is_sensitive_header,
    redact_headers,
    redact_text,
    redact_url,
)

R = REDACTED


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Authorization", True),
        ("authorization", True),
        ("PROXY-AUTHORIZATION", True),
        ("api-key", True),
        ("X-Api-Key", True),
        ("Cookie", True),
        ("Set-Cookie", True),
        ("x-goog-api-key", True),
        ("X-Auth-Token", True),
        ("x-amz-security-token", True),
        ("x-accesstoken", True),
        ("X-Client-Secret", True),
        ("x-webhook-secret-value", True),
        ("x-subscription-key", True),
        ("ocp-apim-subscription-key", True),
        ("x_custom_key", True),
        ("x-password", True),
        ("Content-Type", False),
        ("x-request-id", False),
        ("openai-organization", False),
        ("openai-project", False),
        ("x-ratelimit-remaining-tokens", False),
        ("x-ratelimit-reset-tokens", False),
        ("anthropic-ratelimit-input-tokens-limit", False),
        ("keyboard", False),
        ("monkey", False),
        ("", False),
    ],
)
def test_is_sensitive_header(name: str, expected: bool) -> None:
    assert is_sensitive_header(name) is expected


def test_every_listed_header_is_sensitive_and_lower_case() -> None:
    for name in SENSITIVE_HEADERS:
        assert name == name.lower()
        assert is_sensitive_header(name)
        assert is_sensitive_header(name.upper())


def test_query_keys_are_lower_case() -> None:
    assert all(key == key.lower() for key in SENSITIVE_QUERY_KEYS)


def test_redact_headers_keeps_names_order_and_repeats() -> None:
    items = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sk-abcdef"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-Request-Id", "req_1"),
    ]
    assert redact_headers(items) == [
        ("Content-Type", "application/json"),
        ("Authorization", R),
        ("Set-Cookie", R),
        ("Set-Cookie", R),
        ("X-Request-Id", "req_1"),
    ]


def test_redact_headers_accepts_any_iterable_and_empty() -> None:
    assert redact_headers(iter([("x-api-key", "k")])) == [("x-api-key", R)]
    assert redact_headers([]) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Nothing to hide: returned unchanged.
        ("https://api.openai.com/v1/chat/completions", None),
        ("https://h/p?b=1&c=2#frag", None),
        ("", None),
        ("not a url at all", None),
        ("?", None),
        ("#", None),
        ("https://h/p?key", None),  # a key with no value
        ("https://h/p?key=", None),  # an empty value hides nothing
        ("https://h/p?key=&b=1", None),
        ("https://h/path@with-at?x=1", None),  # "@" in the path is not userinfo
        ("http://[::1]:8080/v1?model=a", None),
        # Query values.
        ("https://h/v1/m?key=AIzaSECRET&b=1", f"https://h/v1/m?key={R}&b=1"),
        ("https://h/v1/m?b=1&key=AIzaSECRET", f"https://h/v1/m?b=1&key={R}"),
        ("https://h/?KEY=s1&Api_Key=s2", f"https://h/?KEY={R}&Api_Key={R}"),
        ("https://h/?key=a&key=b&key=c", f"https://h/?key={R}&key={R}&key={R}"),
        ("https://h/?api%5Fkey=s&b=%5F", f"https://h/?api%5Fkey={R}&b=%5F"),
        ("https://h/?api%5fkey=s", f"https://h/?api%5fkey={R}"),
        ("https://h/?client+secret=s", "https://h/?client+secret=s"),
        ("https://h/?client_secret=s", f"https://h/?client_secret={R}"),
        ("https://h/?access_token=t#x", f"https://h/?access_token={R}#x"),
        ("https://h/?sig=abc%3D%3D&sv=2024", f"https://h/?sig={R}&sv=2024"),
        (
            "https://h/?X-Amz-Signature=ff&X-Amz-Date=1",
            f"https://h/?X-Amz-Signature={R}&X-Amz-Date=1",
        ),
        ("https://h/?code=oauth-code&state=s", f"https://h/?code={R}&state=s"),
        ("https://h/?token=a=b=c", f"https://h/?token={R}"),  # value runs to the next "&"
        ("https://h/?&&key=s&&", f"https://h/?&&key={R}&&"),
        ("https://h/?key=s;b=1", f"https://h/?key={R}"),  # ";" is not a separator (WHATWG)
        ("/v1/models?key=s", f"/v1/models?key={R}"),  # relative reference
        ("https://h/?key=s%20%E2%9C%93&b=✓", f"https://h/?key={R}&b=✓"),
        # Fragments (OAuth implicit flow puts tokens there).
        ("https://h/cb#access_token=t&state=s", f"https://h/cb#access_token={R}&state=s"),
        ("https://h/?a=1#api_key=s", f"https://h/?a=1#api_key={R}"),
        ("https://h/#section-2", None),
        ("https://h/?a=1#?key=s", f"https://h/?a=1#?key={R}"),
        ("https://h/#/callback?access_token=t&x=1", f"https://h/#/callback?access_token={R}&x=1"),
        ("https://h/?a=1?key=s", f"https://h/?a=1?key={R}"),  # a URL glued together twice
        # Userinfo.
        ("https://user:pass@h/p?b=1", f"https://{R}@h/p?b=1"),
        ("https://user@h", f"https://{R}@h"),
        ("https://u:p@ss@h:443/x", f"https://{R}@h:443/x"),
        ("https://u:p@[::1]:8080/?key=s", f"https://{R}@[::1]:8080/?key={R}"),
        ("https://u:p@[2001:db8::1]/", f"https://{R}@[2001:db8::1]/"),
        ("//u:p@h/x", f"//{R}@h/x"),
        ("redis://:secret@localhost:6379/0", f"redis://{R}@localhost:6379/0"),
        ("https://u:pa\\ss@h/", f"https://{R}@h/"),
        ("https://h?x=u:p@h2", None),  # "@" after the authority is not userinfo
        ("https://h#u:p@h2", None),
        ("user:pass@host/x?b=1", f"{R}@host/x?b=1"),  # scheme-less: fails closed
        ("host:443/p@x", None),
    ],
)
def test_redact_url(url: str, expected: str | None) -> None:
    assert redact_url(url) == (url if expected is None else expected)


def test_redact_url_unchanged_is_the_same_object() -> None:
    for url in ("https://api.example.com/v1/models?limit=10&order=desc", "https://h/v1/models"):
        assert redact_url(url) is url


def test_redact_url_keeps_odd_encoding_byte_for_byte() -> None:
    url = "HTTPS://Example.COM:8443/a%2Fb/./c/../d?z=%7e&a=+&key=s&%zz=1&b=%E2%82%AC#Frag%20x"
    expected = (
        f"HTTPS://Example.COM:8443/a%2Fb/./c/../d?z=%7e&a=+&key={R}&%zz=1&b=%E2%82%AC#Frag%20x"
    )
    assert redact_url(url) == expected


def test_redact_url_fails_closed_on_non_string() -> None:
    assert redact_url(None) == R  # type: ignore[arg-type]
    assert redact_url(b"https://h/?key=s") == R  # type: ignore[arg-type]


@given(st.text())
def test_redact_url_never_raises(url: str) -> None:
    out = redact_url(url)
    assert isinstance(out, str)


@given(
    st.text(alphabet=st.characters(blacklist_characters="&#=?@/"), min_size=1),
    st.sampled_from(sorted(SENSITIVE_QUERY_KEYS)),
)
def test_redact_url_hides_any_value_of_a_sensitive_key(value: str, key: str) -> None:
    out = redact_url(f"https://h/p?a=1&{key}={value}&z=2")
    assert out == f"https://h/p?a=1&{key}={R}&z=2"


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token sk-abcdef in text", ["sk-abcdef"], f"token {R} in text"),
        ("sk-abcdef sk-abcdef", ["sk-abcdef"], f"{R} {R}"),
        ("a abc b", ["abc"], "a abc b"),  # shorter than 4: ignored
        ("a  b", [""], "a  b"),
        ("nothing here", ["sk-abcdef"], "nothing here"),
        ("", ["sk-abcdef"], ""),
        ("x", [], "x"),
        # A secret containing another is hidden whole.
        ("key=sk-abcdef-long", ["sk-abc", "sk-abcdef-long"], f"key={R}"),
        # Regex metacharacters are literal.
        ("p=a.b*c+(d)", ["a.b*c+(d)"], f"p={R}"),
        ("p=aXbbc", ["a.b*c"], "p=aXbbc"),
        # Non-ASCII secrets.
        ("pw: pässwörd!", ["pässwörd"], f"pw: {R}!"),
        # A secret that is part of REDACTED itself must not corrupt earlier replacements.
        ("sk-abcdef and DACT", ["sk-abcdef", "DACT"], f"{R} and {R}"),
    ],
)
def test_redact_text(text: str, secrets: list[str], expected: str) -> None:
    assert redact_text(text, secrets) == expected


def test_redact_text_accepts_a_generator_and_duplicates() -> None:
    assert redact_text("k=secret1", (s for s in ["secret1", "secret1"])) == f"k={R}"


@given(st.text(), st.text(min_size=4))
def test_redact_text_removes_every_occurrence(text: str, secret: str) -> None:
    out = redact_text(text + secret + text, [secret])
    assert secret not in out.replace(R, "\x00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sk-proj-abcdefghijklmnopqrstuvwxyz1a2b", "sk-…1a2b"),
        ("Bearer sk-abcdefghijklmnopqrstuvwxyz9z8y", "sk-…9z8y"),
        ("bearer   sk-abcdefghijklmnopqrstuvwxyz9z8y  ", "sk-…9z8y"),
        ("AIzaSyA1234567890abcdefghij", "…ghij"),
        ("ABCD-1234567890abcdefghij", "…ghij"),  # upper-case run is not a type marker
        ("12345678901234567890", "…7890"),  # exactly 20
        ("1234567890123456789", R),  # 19
        ("sk-short", R),
        ("Bearer sk-short", R),
        ("", R),
        ("   ", R),
        ("Bearer", R),
    ],
)
def test_bearer_fingerprint(value: str, expected: str) -> None:
    assert bearer_fingerprint(value) == expected


def test_bearer_fingerprint_never_reveals_more_than_eight_key_characters() -> None:
    key = "abcd-" + "x" * 11 + "WXYZ"
    hint = bearer_fingerprint(key)
    assert hint == "abcd-…WXYZ"
    assert "x" not in hint
