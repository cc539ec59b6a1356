"""The redaction policy: which keys name secrets, which text shapes are masked, and which
ordinary words stay readable.

`SECRET_TEXTS`, `SECRET_KEYS`, `FALSE_POSITIVE_TEXTS` and `NON_SECRET_KEYS` are the shared
corpus: tests/test_secret_corpus.py places each of them everywhere a line can carry it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instrumentation.redaction import (
    KEY_STEMS,
    MASK,
    SECRET_PAIRS,
    SECRET_SUFFIXES,
    SECRET_WORDS,
    is_secret_key,
    key_cache_size,
    redact_text,
)


def _marker(n: int) -> str:
    """A unique word of letters and digits: no shape of its own, so it is masked only by the
    shape around it."""
    return f"MRK{n:02d}qZ7vW3nKx"


def _upper_marker(n: int) -> str:
    """A unique 16-character `[A-Z0-9]` word, for the shapes that take only those."""
    return f"MRK{n:02d}QZ7VW3NKXP4"[:16]


# Shape -> (a realistic text holding a secret, the marker that is the secret or inside it).
SECRET_TEXTS: dict[str, tuple[str, str]] = {
    "password_pair": (f"login failed for bob password={_marker(1)} retry=2", _marker(1)),
    "passwd_pair": (f"useradd -p passwd={_marker(2)} svc", _marker(2)),
    "pwd_in_query": (f"GET /login?user=bob&pwd={_marker(3)} 302", _marker(3)),
    "db_password_pair": (f"connecting host=db db_password={_marker(4)} port=5432", _marker(4)),
    "access_token_in_query": (
        f"GET /oauth/callback?a=1&access_token={_marker(5)}&b=2 200",
        _marker(5),
    ),
    "client_secret_pair": (
        f"token exchange grant_type=client_credentials client_secret={_marker(6)}",
        _marker(6),
    ),
    "x_api_key_header": (f"x-api-key: {_marker(7)}", _marker(7)),
    "x_api_key_header_capitalised": (f"upstream sent X-Api-Key: {_marker(8)}", _marker(8)),
    "password_in_json": (
        f'{{"user": "bob", "password": "correct horse {_marker(9)} staple"}}',
        _marker(9),
    ),
    "password_in_python_repr": (
        f"payload={{'user': 'bob', 'password': 'battery {_marker(10)} staple'}}",
        _marker(10),
    ),
    "authorization_basic": (f"Authorization: Basic {_marker(11)}Ym9iOmh1bnRlcjI=", _marker(11)),
    "authorization_bearer": (f"Authorization: Bearer {_marker(12)}.abc-def", _marker(12)),
    "authorization_digest": (
        f'Authorization: Digest username="bob", realm="api", nonce="dcd98b", '
        f'response="{_marker(13)}"',
        _marker(13),
    ),
    "authorization_without_scheme": (f"authorization: {_marker(14)} (from env)", _marker(14)),
    "bearer_token_in_message": (
        f"upstream call with Bearer {_marker(15)}_x9 failed: 401",
        _marker(15),
    ),
    "postgres_url_password": (
        f"connecting to postgres://app:{_marker(16)}@db:5432/routines",
        _marker(16),
    ),
    "redis_url_password_without_user": (f"redis://:{_marker(17)}@cache:6379/0", _marker(17)),
    "https_url_password": (
        f"cloning https://deploy:{_marker(18)}@git.example.com/app.git",
        _marker(18),
    ),
    "aws_access_key_id": (f"uploading with key AKIA{_upper_marker(19)} to s3", _upper_marker(19)),
    "aws_temporary_key_id": (f"assumed role, key ASIA{_upper_marker(20)}", _upper_marker(20)),
    "jwt_in_message": (
        "session restored from eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        f".eyJzdWIiOiJ1LTEiLCJleHAiOjE3MDAwMDAwMDB9.{_marker(21)}-sIg_9",
        _marker(21),
    ),
    "pem_private_key_block": (
        "loaded key -----BEGIN RSA PRIVATE KEY-----\n"
        f"MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF{_marker(22)}\n"
        "bXlw2sN5kQZ8RlOq+9Lz\n-----END RSA PRIVATE KEY----- ok",
        _marker(22),
    ),
    "pem_block_cut_off": (
        f"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC{_marker(23)}\nbXlw",
        _marker(23),
    ),
    "pem_block_json_escaped": (
        '{"key": "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAA'
        f'{_marker(24)}\\n-----END OPENSSH PRIVATE KEY-----\\n"}}',
        _marker(24),
    ),
    "cookie_header": (f"Cookie: theme=dark; session={_marker(25)}; lang=en", _marker(25)),
    "set_cookie_header": (
        f"Set-Cookie: sessionid={_marker(26)}; Path=/; HttpOnly; Secure",
        _marker(26),
    ),
    "api_key_camel_case": (f"config apiKey={_marker(27)} region=eu", _marker(27)),
    "aws_secret_environment": (
        f"env AWS_SECRET_ACCESS_KEY={_marker(28)}/K7MDENG/bPxRfiCY",
        _marker(28),
    ),
    "private_key_yaml": (f"  private_key: {_marker(29)}", _marker(29)),
    "sessionid_pair": (f"sessionid={_marker(30)}", _marker(30)),
    "session_id_in_json": (f'{{"session_id": "{_marker(31)}", "ttl": 60}}', _marker(31)),
    "jwt_pair": (f"jwt={_marker(32)}", _marker(32)),
    "passphrase_quoted": (f"passphrase: 'two {_marker(33)} words'", _marker(33)),
    "csrf_token_pair": (f"form csrf_token={_marker(34)} accepted", _marker(34)),
    "credentials_dict": (
        f"credentials={{'user': 'svc', 'value': '{_marker(35)}'}}",
        _marker(35),
    ),
    "access_token_camel_in_json": (
        f'{{"accessToken":"{_marker(36)}","expiresIn":3600}}',
        _marker(36),
    ),
    "refresh_token_pair": (f"refresh_token={_marker(37)}", _marker(37)),
    "new_password_camel": (f"change newPassword: {_marker(38)}", _marker(38)),
    "asgi_header_pairs": (
        f"headers=[(b'host', b'api'), (b'authorization', b'Basic {_marker(39)}')]",
        _marker(39),
    ),
    "password_in_escaped_json": (
        f'body="{{\\"username\\": \\"bob\\", \\"password\\": \\"{_marker(40)}\\"}}"',
        _marker(40),
    ),
    "authorization_in_python_repr": (
        f"Headers({{'authorization': 'Bearer {_marker(41)}', 'host': 'api'}})",
        _marker(41),
    ),
    "client_secret_camel": (f"clientSecret={_marker(42)}", _marker(42)),
    "secret_key_environment": (f"SECRET_KEY={_marker(43)}", _marker(43)),
    "proxy_authorization_header": (
        f"Proxy-Authorization: Basic {_marker(44)}=",
        _marker(44),
    ),
    "presigned_url_signature": (
        "GET https://bucket.s3.amazonaws.com/a.png?X-Amz-Expires=300"
        f"&X-Amz-Signature={_marker(45)}&X-Amz-Date=20240101T000000Z",
        _marker(45),
    ),
    "dotenv_quoted_password": (f'DATABASE_PASSWORD="{_marker(46)} with space"', _marker(46)),
    "token_after_spaces": (f"token = {_marker(47)}", _marker(47)),
    "short_password": ("pwd=MRK48q", "MRK48q"),
    "uppercase_bearer": (f"BEARER {_marker(49)}", _marker(49)),
}

# Shape -> a key name that must be treated as a secret.
SECRET_KEYS: dict[str, str] = {
    "password": "password",
    "password_uppercase": "PASSWORD",
    "passwd": "passwd",
    "pwd": "pwd",
    "passphrase": "passphrase",
    "db_password": "db_password",
    "new_password_camel": "newPassword",
    "new_password_compound": "newpassword",
    "secret": "secret",
    "client_secret": "client_secret",
    "client_secret_camel": "clientSecret",
    "client_secret_compound": "clientsecret",
    "token": "token",
    "access_token_camel": "accessToken",
    "access_token_compound": "accesstoken",
    "refresh_token": "refresh_token",
    "csrf_token": "csrf_token",
    "xsrf_token_header": "X-XSRF-TOKEN",
    "jwt": "jwt",
    "api_key": "api_key",
    "api_key_camel": "apiKey",
    "api_key_pascal_allcaps": "APIKey",
    "api_key_compound_upper": "APIKEY",
    "x_api_key_header": "x-api-key",
    "x_api_key_header_capitalised": "X-Api-Key",
    "private_key": "private_key",
    "private_key_dotted": "tls.private.key",
    "secret_key": "secret_key",
    "signing_key": "signing_key",
    "encryption_key": "encryption_key",
    "access_key": "access_key",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "authorization": "Authorization",
    "proxy_authorization": "proxy-authorization",
    "auth_header": "auth_header",
    "cookie": "cookie",
    "set_cookie": "set-cookie",
    "credentials": "credentials",
    "sessionid": "sessionid",
    "session_id": "session_id",
    "session_id_camel": "sessionId",
    "java_session_id": "JSESSIONID",
    "amz_signature": "X-Amz-Signature",
    "key_with_spaces": "db password",
    "password_with_digit": "password2",
}

# Text that looks a little like a secret and must come out unchanged.
FALSE_POSITIVE_TEXTS: list[str] = [
    "password reset requested",
    "token bucket refilled",
    "secretary",
    "the secret of success",
    "tokens: 1200",
    "tokens_used=1200",
    "keyboard",
    "keyboard layout: de",
    "author",
    "author: Ada Lovelace",
    "sessions: 4",
    "monkey=1",
    "turkey: yes",
    "basic plan",
    "https://example.com/a?b=1",
    "user@example.com",
    "http://host:8080/path",
    "12:30:00",
    "2024-05-01T12:30:00.123Z",
    "passwordless login enabled",
    "passwordless: enabled",
    "key_id=42",
    "cache_key=abc",
    "primary_key: 42",
    "GET /api/user/u-1/routine 200",
    "127.0.0.1:51234",
    "[::1]:8000",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    'HTTP Request: GET http://upstream:8000/v1/items "HTTP/1.1 200 OK"',
    "retry after: 30s, attempt=2",
    "auth scheme is bearer",
    "-----BEGIN CERTIFICATE-----",
]

NON_SECRET_KEYS: list[str] = [
    "tokens_used",
    "tokenizer",
    "keyboard",
    "author",
    "authority",
    "secretary",
    "key",
    "key_id",
    "cache_key",
    "primary_key",
    "public_key",
    "idempotency_key",
    "monkey",
    "turkey",
    "sessions",
    "session_count",
    "passwordless",
    "user_id",
    "request_id",
    "x-request-id",
    "status_code",
    "duration_ms",
    "user_agent",
    "basic_plan",
]


@pytest.mark.parametrize(("text", "marker"), SECRET_TEXTS.values(), ids=SECRET_TEXTS.keys())
def test_a_secret_in_text_is_masked(text: str, marker: str) -> None:
    assert marker not in redact_text(text)


@pytest.mark.parametrize(("text", "marker"), SECRET_TEXTS.values(), ids=SECRET_TEXTS.keys())
def test_a_masked_secret_leaves_the_mask(text: str, marker: str) -> None:
    assert MASK in redact_text(text)


@pytest.mark.parametrize(("text", "marker"), SECRET_TEXTS.values(), ids=SECRET_TEXTS.keys())
def test_a_marker_alone_is_no_secret(text: str, marker: str) -> None:
    # Otherwise the corpus would pass without the shape around the marker being recognised.
    assert redact_text(f"note {marker} end") == f"note {marker} end"


def test_every_marker_is_unique() -> None:
    markers = [marker for _, marker in SECRET_TEXTS.values()]
    assert [m for m in markers if sum(m in other for other in markers) > 1] == []


@pytest.mark.parametrize("key", SECRET_KEYS.values(), ids=SECRET_KEYS.keys())
def test_a_secret_key_is_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", SECRET_KEYS.values(), ids=SECRET_KEYS.keys())
def test_a_secret_key_masks_its_value_in_text(key: str) -> None:
    assert "KEYVALUE42" not in redact_text(f"{key}=KEYVALUE42 next=1")


@pytest.mark.parametrize("text", FALSE_POSITIVE_TEXTS)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("key", NON_SECRET_KEYS)
def test_an_ordinary_key_is_no_secret(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:S3cret@db:5432/x", f"postgres://app:{MASK}@db:5432/x"),
        ("?a=1&access_token=XYZ&b=2", f"?a=1&access_token={MASK}&b=2"),
        ('{"password": "a b", "user": "bob"}', f'{{"password": "{MASK}", "user": "bob"}}'),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
        ("Cookie: a=b; c=d", f"Cookie: {MASK}"),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\nnext",
            f"{MASK}\nnext",
        ),
        ("pwd=x", f"pwd={MASK}"),
        ("password=[REDACTED]&b=2", f"password={MASK}&b=2"),
    ],
)
def test_exactly_the_secret_is_replaced(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_every_secret_word_holds_a_stem_the_fast_path_looks_for() -> None:
    # redact_text reads no key in a text without one of `KEY_STEMS`.
    words = [*SECRET_WORDS, *SECRET_SUFFIXES, *(" ".join(pair) for pair in SECRET_PAIRS)]
    assert [w for w in words if not any(stem in w for stem in KEY_STEMS)] == []


def test_a_long_key_is_judged_by_the_same_rule() -> None:
    assert is_secret_key("x" * 10_000 + "_password")


def test_keys_longer_than_64_characters_are_not_cached() -> None:
    is_secret_key("warm_up")
    before = key_cache_size()
    for n in range(1000):
        is_secret_key(f"{n:04d}" + "k" * 10_000)
    assert key_cache_size() == before


def test_the_cache_holds_at_most_4096_keys() -> None:
    for n in range(5000):
        is_secret_key(f"field_{n}")
    assert key_cache_size() <= 4096


# Pieces of every shape, so that generated strings hit the rules' edges, not only plain text.
_FRAGMENTS = st.sampled_from(
    [
        "password",
        "Authorization",
        "cookie",
        "api_key",
        "Basic ",
        "Bearer ",
        "bearer",
        "=",
        ":",
        ": ",
        "://",
        "/",
        "@",
        '"',
        "'",
        "\\",
        '\\"',
        "b'",
        "(",
        ", ",
        "[",
        "]",
        "{",
        "}",
        "&",
        ";",
        " ",
        "\n",
        "eyJhbGciOi.",
        "eyJ",
        "AKIA",
        "ABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
        MASK,
    ]
)
_SHAPED_TEXT = st.lists(_FRAGMENTS | st.text(max_size=4), max_size=24).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.text() | _SHAPED_TEXT)
def test_redaction_is_idempotent_and_never_raises(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once
