"""policy_core.auth: algorithms pinned per key, required and checked claims, roles, API keys.

The one verifier both APIs use (tests/test_auth_matrix_both_apis.py sends the
same tokens through HTTP and gRPC).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from policy_core.access import permissions_for
from policy_core.auth import (
    ApiKeyVerifier,
    CredentialAuthenticator,
    SigningKey,
    TokenVerifier,
    jwks_keys,
    mint_token,
    sign_hs256,
)
from policy_core.errors import AuthError
from policy_core.memory import ManualClock, MemoryApiKeyStore
from policy_core.services import ApiKeyService

TEST_SECRET = "unit-test-secret-for-policy-core-auth-0123"
TEST_ISSUER = "https://issuer.test"
TEST_AUDIENCE = "llm-policy"


def make_token(
    *,
    roles: list[str] | None = None,
    sub: str = "alice",
    exp_in: float = 300,
    claims: dict[str, Any] | None = None,
) -> str:
    """An HS256 token with the test issuer and audience; a None in `claims` removes the claim."""
    now = time.time()
    body = {"sub": sub, "roles": ["admin"] if roles is None else roles, "iat": int(now)}
    body |= {"exp": int(now + exp_in), "iss": TEST_ISSUER, "aud": TEST_AUDIENCE} | (claims or {})
    return sign_hs256(TEST_SECRET, {k: v for k, v in body.items() if v is not None})


def load_jwks(path: str) -> tuple[SigningKey, ...]:
    """What the composition root does: read the file, let the core judge the keys."""
    return jwks_keys(json.loads(Path(path).read_text()), source=path)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs_verifier(**kw: Any) -> TokenVerifier:
    return TokenVerifier(secret=TEST_SECRET, issuer=TEST_ISSUER, audience=TEST_AUDIENCE, **kw)


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def ec() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture
def jwks_file(tmp_path: Path, rsa: RSAKey, ec: ECKey) -> str:
    keys = {"keys": [rsa.as_dict(private=False), ec.as_dict(private=False)]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys))
    return str(path)


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "svc", "roles": ["evaluator"], "exp": now + 60, "iat": now}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_hs256_token_gives_the_principal_and_its_permissions() -> None:
    principal = hs_verifier().verify(make_token(roles=["auditor"], sub="bob"))
    assert principal.id == "bob"
    assert principal.roles == ("auditor",)
    assert principal.permissions == permissions_for(["auditor"])
    assert principal.kind == "jwt"


def test_alg_none_is_rejected() -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims())}."
    with pytest.raises(AuthError):
        hs_verifier().verify(token)


def test_unsigned_token_with_hs256_header_and_empty_signature_is_rejected() -> None:
    token = f"{_b64({'alg': 'HS256'})}.{_b64(claims())}."
    with pytest.raises(AuthError, match=r"signature|invalid|malformed"):
        hs_verifier().verify(token)


def test_rs256_and_es256_tokens_verify_against_the_jwks(
    jwks_file: str, rsa: RSAKey, ec: ECKey
) -> None:
    verifier = TokenVerifier(keys=load_jwks(jwks_file))
    rs = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, claims(sub="r"), rsa)
    es = jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims(sub="e"), ec)
    assert verifier.verify(rs).id == "r"
    assert verifier.verify(es).id == "e"


def test_hs256_signed_with_the_rsa_public_key_is_rejected(jwks_file: str, rsa: RSAKey) -> None:
    # The classic confusion: an attacker signs HS256 with the (public) RSA key as secret.
    verifier = TokenVerifier(keys=load_jwks(jwks_file))
    public_pem = rsa.as_pem(private=False)
    header = _b64({"alg": "HS256", "kid": "rsa-1"})
    body = _b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    with pytest.raises(AuthError, match="HS256"):
        verifier.verify(token)


def test_a_key_only_verifies_its_own_algorithm(jwks_file: str, rsa: RSAKey, ec: ECKey) -> None:
    verifier = TokenVerifier(keys=load_jwks(jwks_file))
    # Header claims ES256 but names the RSA key: no ES256 key has that kid.
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, claims(), rsa)
    _head, body, sig = token.split(".")
    forged = f"{_b64({'alg': 'ES256', 'kid': 'rsa-1'})}.{body}.{sig}"
    with pytest.raises(AuthError):
        verifier.verify(forged)


def test_rs256_token_is_rejected_when_only_a_secret_is_configured(rsa: RSAKey) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, claims(), rsa)
    with pytest.raises(AuthError, match="RS256"):
        hs_verifier().verify(token)


def test_jwks_with_a_symmetric_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    oct_key = OctKey.import_key(TEST_SECRET, {"kid": "k"})
    path.write_text(json.dumps(KeySet([oct_key]).as_dict(private=True)))
    with pytest.raises(ValueError, match="RS256/ES256"):
        load_jwks(str(path))


def test_a_document_that_is_not_a_key_set_names_its_source() -> None:
    with pytest.raises(ValueError, match=r"keys\.json"):
        jwks_keys({"keys": "nope"}, source="keys.json")
    with pytest.raises(ValueError, match=r"(?i)no key"):
        jwks_keys({"keys": []}, source="keys.json")


def test_a_private_key_in_the_jwks_is_refused(rsa: RSAKey) -> None:
    with pytest.raises(ValueError, match="public"):
        jwks_keys({"keys": [rsa.as_dict(private=True)]})


def test_exp_is_required() -> None:
    with pytest.raises(AuthError, match="exp"):
        hs_verifier().verify(make_token(claims={"exp": None}))


def test_sub_is_required() -> None:
    with pytest.raises(AuthError, match="sub"):
        hs_verifier().verify(make_token(claims={"sub": None}))


def test_leeway_is_at_most_30_seconds() -> None:
    verifier = hs_verifier(leeway=3600)
    assert verifier.verify(make_token(exp_in=-20)).id == "alice"
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(make_token(exp_in=-40))


def test_a_cached_token_still_expires() -> None:
    now = [time.time()]
    verifier = hs_verifier(clock=lambda: now[0])
    token = make_token(exp_in=10)
    assert verifier.verify(token).id == "alice"
    now[0] += 45
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_issuer_and_audience_are_checked_when_configured() -> None:
    with pytest.raises(AuthError, match="iss"):
        hs_verifier().verify(make_token(claims={"iss": "https://evil.test"}))
    with pytest.raises(AuthError, match="aud"):
        hs_verifier().verify(make_token(claims={"aud": "another-service"}))
    with pytest.raises(AuthError, match="iss"):
        hs_verifier().verify(make_token(claims={"iss": None}))
    # Not configured: not required.
    relaxed = TokenVerifier(secret=TEST_SECRET)
    assert relaxed.verify(make_token(claims={"iss": None, "aud": None})).id == "alice"


def test_audience_may_be_a_list_holding_ours() -> None:
    token = make_token(claims={"aud": ["other", TEST_AUDIENCE]})
    assert hs_verifier().verify(token).id == "alice"


def test_not_before_in_the_future_is_rejected() -> None:
    with pytest.raises(AuthError, match="not yet valid"):
        hs_verifier().verify(make_token(claims={"nbf": int(time.time()) + 600}))


def test_roles_must_be_a_list_of_names() -> None:
    with pytest.raises(AuthError, match="roles"):
        hs_verifier().verify(make_token(claims={"roles": "admin"}))


def test_unknown_roles_grant_nothing() -> None:
    principal = hs_verifier().verify(make_token(roles=["superuser"]))
    assert principal.permissions == frozenset()


def test_garbage_is_not_a_token() -> None:
    for junk in ["", "abc", "a.b.c", "a.b", "!!!.???.###", "x" * 10_000]:
        with pytest.raises(AuthError):
            hs_verifier().verify(junk)


def test_several_jwks_keys_without_kid_are_ambiguous(tmp_path: Path) -> None:
    keys = [RSAKey.generate_key(2048), RSAKey.generate_key(2048)]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [k.as_dict(private=False) for k in keys]}))
    verifier = TokenVerifier(keys=load_jwks(str(path)))
    token = jwt.encode({"alg": "RS256"}, claims(), keys[0])
    with pytest.raises(AuthError, match="kid"):
        verifier.verify(token)


def test_roles_are_required_and_may_be_empty() -> None:
    with pytest.raises(AuthError, match="roles"):
        hs_verifier().verify(make_token(claims={"roles": None}))
    assert hs_verifier().verify(make_token(roles=[])).permissions == frozenset()


def test_leeway_is_clamped_to_0_30() -> None:
    assert hs_verifier(leeway=3600).leeway == 30
    assert hs_verifier(leeway=-5).leeway == 0
    with pytest.raises(AuthError, match="expired"):
        hs_verifier(leeway=-5).verify(make_token(exp_in=-1))


def test_an_unknown_kid_is_refused(jwks_file: str, rsa: RSAKey) -> None:
    verifier = TokenVerifier(keys=load_jwks(jwks_file))
    token = jwt.encode({"alg": "RS256", "kid": "rsa-2"}, claims(), rsa)
    with pytest.raises(AuthError, match="kid"):
        verifier.verify(token)


def test_a_minted_token_is_accepted() -> None:
    token = mint_token(
        TEST_SECRET,
        subject="carol",
        roles=["auditor"],
        ttl_seconds=60,
        issuer=TEST_ISSUER,
        audience=TEST_AUDIENCE,
    )
    principal = hs_verifier().verify(token)
    assert (principal.id, principal.roles) == ("carol", ("auditor",))


# --- the authenticator: which credential, API keys ---------------------------------------


@pytest.fixture
def keys() -> ApiKeyService:
    return ApiKeyService(MemoryApiKeyStore(), ManualClock(1_700_000_000.0))


async def test_an_api_key_gives_its_roles_until_revoked_here(keys: ApiKeyService) -> None:
    auth = CredentialAuthenticator(api_keys=ApiKeyVerifier(keys, cache_seconds=300))
    key, record = await keys.create("gateway", ["evaluator"])
    principal = await auth.authenticate(None, key)
    assert (principal.id, principal.kind) == (f"apikey:{record.id}", "api_key")
    assert principal.permissions == permissions_for(["evaluator"])
    await keys.revoke(record.id)
    assert (await auth.authenticate(None, key)).id == principal.id  # remembered elsewhere
    auth.forget_api_key(record.id)  # revoked through this instance
    with pytest.raises(AuthError, match="revoked"):
        await auth.authenticate(None, key)


async def test_the_credential_and_its_scheme_are_checked(keys: ApiKeyService) -> None:
    auth = CredentialAuthenticator(tokens=hs_verifier())
    assert (await auth.authenticate(f"Bearer {make_token()}", None)).id == "alice"
    assert (await auth.authenticate(f"bearer  {make_token()} ", "ignored")).id == "alice"
    for authorization, key, message in [
        (None, None, "authentication required"),
        ("Basic abc", None, "Bearer <JWT>"),
        ("Bearer ", None, "Bearer <JWT>"),
        (None, "lpk_x_y", "API keys are not enabled"),
    ]:
        with pytest.raises(AuthError, match=message):
            await auth.authenticate(authorization, key)
    no_tokens = CredentialAuthenticator(tokens=TokenVerifier())
    with pytest.raises(AuthError, match="bearer tokens are not enabled"):
        await no_tokens.authenticate(f"Bearer {make_token()}", None)


async def test_anonymous_access_still_verifies_credentials() -> None:
    auth = CredentialAuthenticator(tokens=hs_verifier(), anonymous=True)
    assert (await auth.authenticate(None, None)).kind == "anonymous"
    with pytest.raises(AuthError, match="expired"):
        await auth.authenticate(f"Bearer {make_token(exp_in=-120)}", None)
