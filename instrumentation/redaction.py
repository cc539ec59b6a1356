"""Mask secrets before a line is written: one policy for field names and for free text.

`is_secret_key` decides whether a key names a secret; `redact_text` masks the secrets a string
carries in a known shape (``password=…``, ``Authorization: …``, a JWT, a PEM block…), using the
same key policy for every ``key=value`` it finds. docs/redaction.md lists what is and is not
masked, and why.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

# A key's words: ALLCAPS runs, Capitalised and lowercase runs; digits and punctuation split.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
# A word that names a secret on its own (`db_password`, `Authorization`, `jwt`).
SECRET_WORDS = frozenset(
    {
        "password",
        "passwords",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "jwt",
        "bearer",
        "authorization",
        "authorisation",
        "auth",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "creds",
        "signature",
        "apikey",
        "privatekey",
        "secretkey",
        "accesskey",
        "signingkey",
        "encryptionkey",
        "sessionid",
        "sessid",
    }
)
# A compound written as one word names a secret when it ends with one of these
# (`accesstoken`, `newpassword`, `clientsecret`, `xapikey`). Short words are left out on
# purpose: `auth` would take `oauth` only, `pass` would take `bypass`, `sid` would take `inside`.
SECRET_SUFFIXES = (
    "authorization",
    "authorisation",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "cookie",
    "credential",
    "credentials",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "sessionid",
    "sessid",
    "jwt",
)
# Two consecutive words that name a secret together, though neither does alone (`api_key`,
# `sessionId`); a plain `key` or `id` is not a secret (`cache_key`, `key_id`).
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("api", "keys"),
        ("private", "key"),
        ("secret", "key"),
        ("access", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("hmac", "key"),
        ("shared", "key"),
        ("session", "id"),
        ("session", "key"),
    }
)
_CACHED_KEY_CHARS = 64
_CACHE_ENTRIES = 4096
# Key -> verdict, for keys of up to `_CACHED_KEY_CHARS` characters: at most 4096 entries of at
# most 256 bytes of text each. A longer key is judged every time, so no caller can make this
# hold large strings.
_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """True when `key` names a secret, in any case style.

    The key is split into words at ``_ - .``, spaces and other punctuation, at digits, at
    camelCase boundaries and around ALLCAPS runs, and the words are lowercased. It is a
    secret when a word is a secret word (``password``, ``token``, ``secret``, ``auth``,
    ``cookie``, ``credentials``, ``jwt``, ``apikey``, ``sessionid`` …), when a word is a
    compound ending with one (``accesstoken``, ``newpassword``), or when two consecutive
    words form one (``api`` + ``key``, ``private`` + ``key``, ``session`` + ``id`` …)::

        >>> [is_secret_key(k) for k in ("accessToken", "X-Api-Key", "AWS_SECRET_ACCESS_KEY")]
        [True, True, True]
        >>> [is_secret_key(k) for k in ("tokens_used", "cache_key", "key_id", "author")]
        [False, False, False, False]
    """
    secret = _cache.get(key)
    if secret is None:
        secret = _key_names_secret(key)
        if len(key) <= _CACHED_KEY_CHARS:
            if len(_cache) >= _CACHE_ENTRIES:
                _cache.clear()  # a flood of odd keys costs recomputation, never memory
            _cache[key] = secret
    return secret


def _key_names_secret(key: str) -> bool:
    previous = ""
    for match in _WORD.finditer(key):
        word = match.group().lower()
        if (
            word in SECRET_WORDS
            or word.endswith(SECRET_SUFFIXES)
            or (previous, word) in SECRET_PAIRS
        ):
            return True
        previous = word
    return False


def key_cache_size() -> int:
    """How many verdicts `is_secret_key` holds now (bounded: at most 4096)."""
    return len(_cache)


_PEM_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?s:.*?-----END[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----|.*)"
)
_TOKEN68 = r"[A-Za-z0-9\-._~+/]++=*+"
# scheme://user:password@host; `[` and `]` are not URL userinfo, and keep a mask from joining one.
_USERINFO = r":(?P<userinfo>//[^\s/?#@:\[\]]*+:)(?P<password>[^\s/?#\[\]]+)(?=@)"
_KEYLESS = (
    rf"B(?<![\w.-].)(?:earer|EARER)[ \t]++(?P<bearer>{_TOKEN68})"
    rf"|b(?<![\w.-].)earer[ \t]++(?P<lower_bearer>{_TOKEN68})"
    r"|J(?<=(?<![A-Za-z0-9_-])eyJ)(?P<jwt>[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+)"
    r"|A(?P<aws>(?<![A-Za-z0-9].)[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9]))"
)
# Every alternative starts with a literal character, so the search skips from one candidate
# character to the next in C instead of trying each position. A `key: value` pair is found
# at its separator and its key read backwards from there (`_KEY_BEFORE`): a key cannot start
# a cheap search, since almost every character could begin one.
_SHAPES = re.compile(
    rf"{_USERINFO}|:(?P<colon>)|=(?P<equals>)|{_KEYLESS}"
    # ('authorization', 'Basic …'): a header pair as ASGI and httpx print them.
    r"|\((?P<pair>[ \t]*+b?(?P<quote>[\"'])(?P<pair_key>[\w.-]++)(?P=quote),[ \t]*+)"
)
# The shapes that need no key, for a text in which no key can be a secret.
_KEYLESS_SHAPES = re.compile(f"{_USERINFO}|{_KEYLESS}")
# Every key `is_secret_key` calls a secret holds one of these, lowercased (tests check it).
KEY_STEMS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "cookie",
    "cred",
    "sess",
    "jwt",
    "bearer",
    "signature",
)
# On the reversed text, from just before a separator: spaces, a closing quote (maybe
# JSON-escaped, once or more), then the key.
_KEY_BEFORE = re.compile(r"[ \t]*+(?:[\"']\\*+)?([\w.-]++)")
# The value after a secret key; the first alternative that fits.
_VALUE = re.compile(
    r"[ \t]*+(?:[=>][ \t]*+)?(?:"  # `=>`, `:=` and `==` too
    r"(?P<whole>\[[^\[\]\r\n]*\]"  # a flat list, or an earlier mask
    r"|\{[^{}\r\n]*\}"  # a flat object
    r"|[\[{][^\r\n]*)"  # a nested or cut-off container: to the end of the line
    r"|(?P<open_double>b?\")(?:[^\"\\\r\n]|\\[^\r\n])*+(?P<double>\"?)"
    r"|(?P<open_single>b?')(?:[^'\\\r\n]|\\[^\r\n])*+(?P<single>'?)"
    r"|(?P<open_escaped>\\++\")(?:[^\\\"\r\n]|\\++(?=[^\\\"\r\n]))*+(?P<escaped>(?:\\++\")?)"
    r"|(?P<bare>[^\s&,;\"'<>\\]++)"  # a bare word, up to a space or one of & , ;
    r")"
)
# A quoted value is masked inside its quotes: the group that closes it -> the one opening it.
_OPENING_OF = {"double": "open_double", "single": "open_single", "escaped": "open_escaped"}
# An unquoted Authorization or Cookie header value runs to the end of the line. The scheme
# name is kept (`Authorization: Basic [REDACTED]`) when it is a known one; any other first
# word may be the credential itself.
_HEADER_KEYS = ("authorization", "authorisation", "cookie")
_HEADER_VALUE = re.compile(
    r"[ \t]*+(?![\\\"'])"
    r"(?:(?i:basic|bearer|digest|negotiate|ntlm|token|hoba|mutual|dpop|oauth|vapid"
    r"|aws4-hmac-sha256|scram-sha-1|scram-sha-256)[ \t]++(?=\S))?"
    r"(?P<line>\S[^\r\n]*)"
)


def redact_text(text: str) -> str:
    """`text` with every secret of a known shape replaced by `MASK`.

    The shapes: ``key=value``, ``key: value`` and ``"key": "value"`` pairs whose key
    `is_secret_key` calls a secret (a quoted value may hold spaces); ``Authorization`` and
    ``Cookie`` headers (to the end of the line); ``Bearer <token>``; the password in
    ``scheme://user:password@host``; JWTs; AWS access key ids; PEM private key blocks::

        >>> redact_text("retry password=hunter2&user=bob via postgres://app:S3cret@db/x")
        'retry password=[REDACTED]&user=bob via postgres://app:[REDACTED]@db/x'
    """
    # Most strings (paths, user agents, addresses, plain messages) hold no character a shape
    # needs; each test of several characters runs only when a rare one it needs is present.
    if not (
        ":" in text
        or "=" in text
        or ("J" in text and "eyJ" in text)
        or ("I" in text and ("AKIA" in text or "ASIA" in text))
        or ("B" in text and ("Bearer" in text or "BEARER" in text or "-----BEGIN" in text))
        or ("b" in text and "bearer" in text)
        or (("'" in text or '"' in text) and ("'," in text or '",' in text))
    ):
        return text
    if "-----BEGIN" in text:
        text = _PEM_BLOCK.sub(MASK, text)
    return _mask_shapes(text)


def _mask_shapes(text: str) -> str:
    lowered = text.lower()
    if lowered == text.upper():
        return text  # no letter, so no key, scheme, token or key id: times, addresses, ports
    # Most `:` and `=` in logs follow no key at all or an ordinary one (`localhost:8000`,
    # `12:30:00Z`, `status=200`); when no key could be a secret, none is read.
    search = _SHAPES.search if _may_hold_secret_key(lowered) else _KEYLESS_SHAPES.search
    parts: list[str] = []
    done = 0  # text[:done] is in `parts`
    pos = 0
    backwards = ""  # the text reversed, made at the first separator
    while (match := search(text, pos)) is not None:
        kind = match.lastgroup or ""
        if kind == "colon" or kind == "equals" or kind == "password":
            separator = match.start()
            backwards = backwards or text[::-1]
            key = _key_before(text, backwards, separator, done)
            value = _secret_value(text, key, separator + 1, header=True) if key else None
            if value is None and kind == "password":  # a URL's, unless all of it is a secret's
                value = match.span("password")
        elif kind == "pair":
            value = _secret_value(text, match.group("pair_key"), match.end(), header=False)
        else:
            start, end = match.span(kind)
            if kind == "jwt":
                start -= 3  # the `eyJ` it starts with
            elif kind == "aws":
                start -= 1
            parts += (text[done:start], MASK)
            done = pos = end
            continue
        if value is None:
            pos = match.end()
            continue
        start, end = value
        parts += (text[done:start], MASK)
        done = pos = end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _may_hold_secret_key(lowered: str) -> bool:
    for stem in KEY_STEMS:  # noqa: SIM110 - any() over a generator takes twice as long
        if stem in lowered:
            return True
    return False


def _key_before(text: str, backwards: str, separator: int, done: int) -> str:
    """The key ending just before `separator` (spaces and a closing quote skipped), or ``""``;
    none of it before `done`, which is already masked."""
    key = _KEY_BEFORE.match(backwards, len(text) - separator)
    if key is None:
        return ""
    return text[max(len(text) - key.end(1), done) : len(text) - key.start(1)]


def _secret_value(text: str, key: str, pos: int, *, header: bool) -> tuple[int, int] | None:
    """The span to mask of the value at `pos`, when `key` is a secret."""
    if not is_secret_key(key):
        return None
    if header and key.lower().endswith(_HEADER_KEYS):
        line = _HEADER_VALUE.match(text, pos)
        if line is not None:
            return line.span("line")
    value = _VALUE.match(text, pos)
    if value is None:
        return None
    kind = value.lastgroup or ""
    opening = _OPENING_OF.get(kind)
    if opening is None:
        return value.span(kind)
    return value.end(opening), value.start(kind)  # the quotes are kept
