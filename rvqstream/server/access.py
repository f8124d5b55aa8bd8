"""Who may do what: identities (bearer tokens, client certificates) and their permissions.

The access file (``--auth-tokens FILE``, TOML) lists tokens by the SHA-256 of their secret, never
the secret itself, and client-certificate subjects, each with its permissions::

    [[token]]
    name = "edge-fleet"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    publish = ["sensors/*"]          # channel-name patterns it may publish to
    subscribe = ["sensors/*", "news"]  # ... subscribe to (Subscribe, FetchMessage)
    admin = false                    # all channels, and server operations (reflection)

    [[client]]                       # under mTLS: the verified certificate's subject
    subject = "CN=device-17,O=Example"
    subscribe = ["*"]

Patterns are shell-style (``fnmatch``, case-sensitive): ``*`` matches any run of characters,
``/`` included; ``?`` one character. Every identity may use the codec (compress, decompress,
encode and decode streams) and fetch models, which every decoder needs. ``rvqstream token NAME``
makes a token and its entry. The file is read at start and again on SIGHUP; a file that does not
parse keeps the rules in force.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

TOKEN_BYTES = 32              # a new token's secret: 256 random bits, URL-safe base64
SHA256_HEX = 64


class AccessFileError(ValueError):
    """The access file does not parse or breaks its rules."""


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token's secret, as the access file stores it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token secret."""
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class Identity:
    """A caller the rules know: its name (a token's name or a certificate subject) and what it may
    do."""

    name: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    admin: bool = False

    def may(self, action: str, channel: str) -> bool:
        """Whether this identity may ``action`` ("publish" or "subscribe") on ``channel``."""
        if self.admin:
            return True
        patterns = self.publish if action == "publish" else self.subscribe
        return any(fnmatch.fnmatchcase(channel, p) for p in patterns)


ANONYMOUS = Identity("anonymous", ("*",), ("*",), admin=True)   # a server with no access rules


class AccessRules:
    """Identities by token hash and by certificate subject."""

    def __init__(self, tokens: dict[str, Identity], clients: dict[str, Identity]):
        self._tokens, self._clients = tokens, clients

    @classmethod
    def load(cls, path: Path | str) -> AccessRules:
        """Reads an access file; ``AccessFileError`` naming what is wrong."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise AccessFileError(f"{path}: {e}") from None
        unknown = set(data) - {"token", "client"}
        if unknown:
            raise AccessFileError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
        tokens: dict[str, Identity] = {}
        for i, entry in enumerate(data.get("token", [])):
            where = f"{path}: token {i + 1}"
            digest = _string(entry, "sha256", where).lower()
            if len(digest) != SHA256_HEX or any(c not in "0123456789abcdef" for c in digest):
                raise AccessFileError(f"{where}: sha256 must be 64 hex digits")
            if digest in tokens:
                raise AccessFileError(f"{where}: the same token is listed twice")
            tokens[digest] = _identity(entry, _string(entry, "name", where), where, {"sha256"})
        clients: dict[str, Identity] = {}
        for i, entry in enumerate(data.get("client", [])):
            where = f"{path}: client {i + 1}"
            subject = _string(entry, "subject", where)
            clients[subject] = _identity(entry, subject, where, {"subject"})
        return cls(tokens, clients)

    def by_token(self, token: str) -> Identity | None:
        """The identity of a bearer token's secret, or None (looked up by its hash: the time
        taken says nothing about the secrets held)."""
        return self._tokens.get(hash_token(token))

    def by_subject(self, subject: str) -> Identity | None:
        """The identity of a verified client certificate's subject, or None."""
        return self._clients.get(subject)

    def __len__(self) -> int:
        return len(self._tokens) + len(self._clients)


def _string(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise AccessFileError(f"{where}: {key} must be a non-empty string")
    return value


def _identity(entry: dict, name: str, where: str, own: set[str]) -> Identity:
    unknown = set(entry) - own - {"name", "publish", "subscribe", "admin"}
    if unknown:
        raise AccessFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    lists = {}
    for key in ("publish", "subscribe"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise AccessFileError(f"{where}: {key} must be a list of channel-name patterns")
        lists[key] = tuple(value)
    admin = entry.get("admin", False)
    if not isinstance(admin, bool):
        raise AccessFileError(f"{where}: admin must be true or false")
    return Identity(name, lists["publish"], lists["subscribe"], admin)


def token_entry(name: str, token: str, publish: list[str], subscribe: list[str], admin: bool) -> str:
    """The access-file entry (TOML) of a token."""
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(_toml_string(p) for p in items) + "]"

    return (f"[[token]]\nname = {_toml_string(name)}\nsha256 = \"{hash_token(token)}\"\n"
            f"publish = {toml_list(publish)}\nsubscribe = {toml_list(subscribe)}\n"
            f"admin = {'true' if admin else 'false'}\n")


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
