"""Project exceptions. Each message tells the user what is wrong and how to fix it.

The CLI maps them to exit codes (see ``exit_code``): configuration and model errors are
permanent (2, so systemd does not restart in a loop), everything else is a runtime failure (1).
"""

from __future__ import annotations

import re


class EdgeposeError(Exception):
    """Base class: a user-facing error whose message names the fix."""

    exit_code = 1


class ConfigError(EdgeposeError):
    """Invalid configuration: names the key path, the bad value and what is allowed."""

    exit_code = 2


class ModelError(EdgeposeError):
    """A model that is missing, corrupt or of an unknown layout: names the file and the tensors."""

    exit_code = 2


class SourceError(EdgeposeError):
    """A frame source that cannot be opened or read: names the device and a hint."""

    exit_code = 1


class OutputError(EdgeposeError):
    """An output sink that cannot be opened or written."""

    exit_code = 1


class FrameError(EdgeposeError):
    """A frame of a shape or dtype that cannot be converted to HxWx3 uint8 RGB."""

    exit_code = 1


def missing_dependency(module: str, extra: str, purpose: str) -> ModelError:
    """The error raised when an optional dependency is not installed."""
    return ModelError(
        f"{purpose} needs the Python package '{module}', which is not installed. "
        f"Install it with: pip install 'edgepose[{extra}]'"
    )


class SourceNotFoundError(ConfigError, SourceError):
    """A source file, folder or glob that names nothing: permanent (exit 2), unlike a camera that went away."""


# -- what a message may echo --------------------------------------------------------------------
# Credentials are masked in every message (docs/MQTT.md, docs/INSTALL.md): by key name (even a misspelt
# or unknown key), by URL user-info in any string, and by ``key=value`` parameters. Echoed values are
# capped, so a 5 MB bad value makes a one-line message, not a 5 MB one.

MASK = "***"
ECHO_CAP = 100  # characters of one echoed value; the rest is cut with "..." and the original size

# A key whose last word is a password/token/secret/key: password, passwd, pwd, pw, passphrase, pasword,
# token, access_token, secret, client_secret, api_key, apikey, private_key, auth, credentials, signature.
# password_file / password_env / password_credential / key_file name where a secret is, not the secret.
_SECRET_WORD = re.compile(
    r"(?:pa?s+w?o?r?d?s?|pass\w*|pwd?|secrets?|tokens?|\w*token|keys?|apikey|\w*secret|auth|authorization"
    r"|credentials|sig|signature|bearer|cookie)", re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[\s_.\-]+")
# URLs are found by splitting at "://" (a regex over the whole text is quadratic on some inputs): the
# scheme must end the text before it, the authority runs to the first / ? # or space after it.
_SCHEME_TAIL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*\Z")
_AUTHORITY_END = re.compile(r"[\s/?#]")
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:pass(?:word|wd)?|pwd|user-pw|token|access_token|api[_-]?key|secret|auth|sig(?:nature)?))"
    r"(?P<eq>=)(?P<value>[^&\s!'\"]+)", re.IGNORECASE)


def is_secret_key(key: object) -> bool:
    """True for a mapping key that names a secret (its last word), e.g. ``password``, ``web_token``, ``api-key``."""
    if not isinstance(key, str) or not key or len(key) > 200:
        return False
    words = [w for w in _WORD_SPLIT.split(key) if w]
    return bool(words) and _SECRET_WORD.fullmatch(words[-1]) is not None


def mask_text(text: str) -> str:
    """``text`` with URL user-info (rtsp://user:***@host) and ``password=...``-style parameters masked.

    A lone user-info (http://TOKEN@host) is masked entirely: cameras often put a key there.
    """
    if "@" in text and "://" in text:
        text = _userinfo(text)[0]
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['key']}={MASK}", text)
    return text


def url_secrets(text: str) -> list[str]:
    """The passwords (and lone user-infos) of the URLs in ``text``: what ``mask_text`` hides."""
    return _userinfo(text)[1] if "@" in text and "://" in text else []


def _userinfo(text: str) -> tuple[str, list[str]]:
    """(text with each URL's user-info masked, the hidden parts); linear in len(text)."""
    parts = text.split("://")
    secrets: list[str] = []
    for i in range(1, len(parts)):
        part = parts[i]
        if "@" not in part or not _SCHEME_TAIL.search(parts[i - 1][-32:]):
            continue
        end = _AUTHORITY_END.search(part)
        authority = part[: end.start()] if end else part
        at = authority.rfind("@")  # a password may hold an unencoded '@': the host follows the last one
        if at < 0 or authority.startswith("["):  # "mqtt://[user@]host": a form in a help text, not a URL
            continue
        user, colon, pw = authority[:at].partition(":")
        hidden = pw if colon else authority[:at]
        if hidden:
            secrets.append(hidden)
        parts[i] = (f"{user}:{MASK}" if colon else MASK) + part[at:]
    return "://".join(parts), secrets


def brief(value: object, cap: int = ECHO_CAP) -> str:
    """A masked repr of ``value`` of at most about ``cap`` characters, built lazily (a 5 MB list costs nothing)."""
    out: list[str] = []
    n = 0
    for piece in _pieces(value, cap, 0):
        out.append(piece)
        n += len(piece)
        if n > cap:
            break
    text = "".join(out)
    if n <= cap:
        return text
    return f"{text[:cap]}... ({_size(value)})"


def _size(value: object) -> str:
    if isinstance(value, (str, bytes)):
        return f"{len(value)} chars"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{len(value)} items"
    return f"{len(safe_repr(value))} chars"


def _pieces(value: object, cap: int, depth: int):
    if depth > 8:
        yield "..."
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _pieces(k, cap, depth + 1)
            yield ": "
            if is_secret_key(k):
                yield MASK
            else:
                yield from _pieces(v, cap, depth + 1)
        yield "}"
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield "["
        for i, v in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(v, cap, depth + 1)
        yield "]"
    elif isinstance(value, str):
        yield repr(mask_text(value)[: cap + 1])  # masked whole, then cut: a cut never leaves half a password
    else:
        yield mask_text(safe_repr(value))[: cap + 1]


def safe_repr(value: object) -> str:
    """repr() that cannot fail: an integer past Python's 4300-digit str limit is named by its size."""
    try:
        return repr(value)
    except ValueError:
        return f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else f"<a {type(value).__name__}>"


def redact(message: str, cap: int = 4000, line_cap: int = 500) -> str:
    """A message fit for stderr or the journal: credentials masked, each line and the whole capped."""
    lines = mask_text(str(message)).splitlines() or [""]  # masked whole first, then cut
    kept = [line if len(line) <= line_cap else f"{line[:line_cap]}... ({len(line)} chars)" for line in lines[:50]]
    if len(lines) > 50:
        kept.append(f"... ({len(lines) - 50} more lines)")
    text = "\n".join(kept)
    return text if len(text) <= cap else f"{text[:cap]}... ({len(text)} chars)"
