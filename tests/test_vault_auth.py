"""Logging in to OpenBao: AppRole and JWT (how Kubernetes service accounts
log in too), against auth mounts these tests configure on the real dev
server (support.openbao). The JWT key pair is generated here and the
server is given its public half (``jwt_validation_pubkeys``).

A token obtained by login lives in a cell: renewed while the store is open,
revoked when it closes. The tests cannot see that token (that is the
point), so they find it on the server by its accessor: the one accessor
that appears between before and after the load.

No role ID, secret ID, JWT or token may show in an error, its ``__cause__``
or ``__context__`` (or their frames' locals), a warning or a log record.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support.openbao import OpenBao
from support.provider_contract import value_in_traceback

from cypher_cell import ProviderError, SecretStore, load_secrets
from cypher_cell.providers import Provider

AUDIENCE = "cypher-cell-tests"
ISSUER = "https://issuer.cypher-cell.test"
TOKEN_TTL = 4  # seconds: short, so renewal shows within a test
#: OpenBao service tokens (s.<24 characters>) and batch tokens (b.<...>).
TOKEN_PATTERN = re.compile(r"\b[sb]\.[A-Za-z0-9]{20,}")


@dataclass
class Auth:
    server: OpenBao
    path: str
    api_key: bytes
    role_id: str
    secret_id: str
    jwt_file: Path
    signing_key: rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key: rsa.RSAPrivateKey, claims: dict[str, object]) -> str:
    """An RS256 JWT (RFC 7519) signed with `key`."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64url(signature)}"


def service_account_claims(subject: str = "system:serviceaccount:apps:web") -> dict[str, object]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + 3600}


@pytest.fixture(scope="module")
def auth(openbao: OpenBao, tmp_path_factory: pytest.TempPathFactory) -> Auth:
    server = openbao
    api_key = b"k-" + secrets.token_hex(16).encode()
    server.kv_put("auth-app", {"API_KEY": api_key.decode()})
    server.policy("auth-reader", 'path "secret/data/auth-app" { capabilities = ["read"] }')
    token_settings = {"token_policies": ["auth-reader"], "token_ttl": TOKEN_TTL, "token_max_ttl": 3600}

    server.enable_auth("approle", "approle")
    server.api("POST", "auth/approle/role/app", token_settings)
    _, r = server.api("GET", "auth/approle/role/app/role-id")
    role_id = str(r["data"]["role_id"])  # type: ignore[index]
    _, r = server.api("POST", "auth/approle/role/app/secret-id")
    secret_id = str(r["data"]["secret_id"])  # type: ignore[index]

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server.enable_auth("jwt", "jwt")
    config = {"jwt_validation_pubkeys": [public.decode()], "bound_issuer": ISSUER}
    server.api("POST", "auth/jwt/config", config)
    server.api(
        "POST",
        "auth/jwt/role/app",
        {"role_type": "jwt", "user_claim": "sub", "bound_audiences": [AUDIENCE], **token_settings},
    )
    jwt_file = tmp_path_factory.mktemp("jwt") / "token"
    jwt_file.write_text(sign_jwt(key, service_account_claims()))
    jwt_file.chmod(0o600)
    return Auth(server, "secret/auth-app", api_key, role_id, secret_id, jwt_file, key)


def approle(a: Auth) -> object:
    from cypher_cell.providers import VaultAppRole

    return VaultAppRole(a.role_id, a.secret_id)


def jwt(a: Auth) -> object:
    from cypher_cell.providers import VaultJWT

    return VaultJWT("app", a.jwt_file)


LOGINS: dict[str, Callable[[Auth], object]] = {"approle": approle, "jwt": jwt}


def load(a: Auth, auth_method: object, path: str | None = None) -> SecretStore:
    return load_secrets(vault(a, auth_method, path))


def accessors(server: OpenBao) -> set[str]:
    _, r = server.api("LIST", "auth/token/accessors")
    return set(r["data"]["keys"])  # type: ignore[index]


def token_record(server: OpenBao, accessor: str) -> dict[str, object] | None:
    """The server's record of a token (by accessor), None once revoked."""
    status, r = server.api("POST", "auth/token/lookup-accessor", {"accessor": accessor}, check=False)
    return r.get("data") if status == 200 else None  # type: ignore[return-value]


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_login_reads_the_secret(auth: Auth, login: str, stores: list[SecretStore]) -> None:
    store = load(auth, LOGINS[login](auth))
    stores.append(store)
    same = store["API_KEY"] == auth.api_key
    assert same, f"API_KEY read after {login} login differs from the one written"


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_the_login_token_is_renewed_while_open_and_revoked_at_close(auth: Auth, login: str) -> None:
    before = accessors(auth.server)
    store = load(auth, LOGINS[login](auth))
    try:
        new = accessors(auth.server) - before
        assert len(new) == 1, f"{login}: expected one new token on the server, found {len(new)}"
        accessor = new.pop()
        record = token_record(auth.server, accessor)
        assert record is not None
        first_expiry = str(record["expire_time"])
        loaded = time.monotonic()
        renewed = False
        # Until past the first TTL, with the token renewed at least once.
        while time.monotonic() - loaded < 3 * TOKEN_TTL:
            record = token_record(auth.server, accessor)
            assert record is not None, f"{login}: the login token expired while the store was open"
            renewed = renewed or str(record["expire_time"]) > first_expiry
            if renewed and time.monotonic() - loaded > TOKEN_TTL + 1:
                break
            time.sleep(0.25)
        assert renewed, f"{login}: the login token was never renewed"
        # Still able to act past the token's first TTL.
        same = store["API_KEY"] == auth.api_key
        assert same, "API_KEY differs"
    finally:
        store.close()
    assert token_record(auth.server, accessor) is None, f"{login}: the login token outlived close()"


def test_a_token_given_by_the_caller_is_not_revoked_at_close(auth: Auth) -> None:
    """Control for the test above: only tokens the store obtained are its to revoke."""
    from cypher_cell.providers import VaultToken

    token = auth.server.token("auth-reader")
    load(auth, VaultToken(token)).close()
    assert auth.server.token_valid(token), "close() revoked a token the caller owns"


# --- nothing secret in errors, warnings or logs --------------------------------


@dataclass
class Failure:
    error: BaseException
    warnings: list[str]
    logs: list[str]

    def places(self, value: str) -> list[str]:
        """Where `value` shows (never the value itself)."""
        found = value_in_traceback(self.error, value.encode())
        found += [f"warning {i}" for i, w in enumerate(self.warnings) if value in w]
        found += [f"log record {i}" for i, r in enumerate(self.logs) if value in r]
        return found


def vault(a: Auth, auth_method: object, path: str | None = None) -> Provider:
    from cypher_cell.providers import Vault

    return Vault(path or a.path, url=a.server.address, auth=auth_method)  # type: ignore[arg-type]


def _attempt(provider: Provider) -> BaseException | None:
    """The error a load from `provider` raises. Its traceback starts in this
    frame, whose only local is the provider: the frames it records hold only
    what the library keeps (an ID kept as a str would show)."""
    try:
        load_secrets(provider)
    except Exception as exc:
        return exc
    return None


def failing_load(caplog: pytest.LogCaptureFixture, provider: Provider) -> Failure:
    """Loads from `provider` (made by the caller) expecting a ProviderError,
    with every warning and log record (DEBUG and up) captured."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = _attempt(provider)
    assert isinstance(error, ProviderError), f"expected a ProviderError, got {type(error).__name__}"
    records = [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    return Failure(error, [str(w.message) for w in caught], records)


def test_a_wrong_secret_id_fails_without_showing_either_id(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    from cypher_cell.providers import VaultAppRole

    wrong = str(uuid.uuid4())
    failure = failing_load(caplog, vault(auth, VaultAppRole(auth.role_id, wrong)))
    assert "approle" in str(failure.error)
    for name, value in (("secret_id", wrong), ("role_id", auth.role_id)):
        places = failure.places(value)
        assert places == [], f"the {name} shows in {places}"


def test_a_wrong_role_id_fails_without_showing_the_secret_id(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    from cypher_cell.providers import VaultAppRole

    failure = failing_load(caplog, vault(auth, VaultAppRole(str(uuid.uuid4()), auth.secret_id)))
    places = failure.places(auth.secret_id)
    assert places == [], f"the secret_id shows in {places}"


def test_a_jwt_signed_by_another_key_fails_without_showing_the_jwt(
    auth: Auth, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from cypher_cell.providers import VaultJWT

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = sign_jwt(stranger, service_account_claims())
    jwt_file = tmp_path / "token"
    jwt_file.write_text(forged)
    failure = failing_load(caplog, vault(auth, VaultJWT("app", jwt_file)))
    assert "jwt" in str(failure.error)
    for part, value in zip(("header", "claims", "signature"), forged.split("."), strict=True):
        places = failure.places(value)
        assert places == [], f"the JWT's {part} shows in {places}"


def test_a_token_without_permission_names_address_and_path_but_not_the_token(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    from cypher_cell.providers import VaultToken

    token = auth.server.token("default")  # may not read secret/auth-app
    failure = failing_load(caplog, vault(auth, VaultToken(token)))
    message = str(failure.error)
    assert "permission denied" in message and auth.server.address in message and auth.path in message, message
    places = failure.places(token)
    assert places == [], f"the token shows in {places}"


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_a_read_refused_after_login_shows_no_token_and_revokes_it(
    auth: Auth, login: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The login succeeds, the read is refused (the role's policy does not
    cover the path): the token the login obtained must not show, and the
    failed load must not leave it live on the server."""
    auth.server.kv_put("auth-other", {"OTHER": "x"})
    before = accessors(auth.server)
    failure = failing_load(caplog, vault(auth, LOGINS[login](auth), path="secret/auth-other"))
    assert "permission denied" in str(failure.error)
    text = "".join(traceback.TracebackException.from_exception(failure.error, capture_locals=True).format())
    shown = TOKEN_PATTERN.findall(text + "\n".join(failure.warnings + failure.logs))
    assert shown == [], f"{len(shown)} token-shaped strings in the error, warnings or logs"
    live = [a for a in accessors(auth.server) - before if token_record(auth.server, a) is not None]
    assert live == [], f"{login}: {len(live)} login token(s) left live after the failed load"
