"""JWT verification: algorithms pinned per key, required and checked claims, roles."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey
from policy_http._auth import AuthError, JwtVerifier, load_jwks, permissions_for
from policy_http.testing import TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET, make_token


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs_verifier(**kw: Any) -> JwtVerifier:
    return JwtVerifier(secret=TEST_SECRET, issuer=TEST_ISSUER, audience=TEST_AUDIENCE, **kw)


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
    verifier = JwtVerifier(jwks=load_jwks(jwks_file))
    rs = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, claims(sub="r"), rsa)
    es = jwt.encode({"alg": "ES256", "kid": "ec-1"}, claims(sub="e"), ec)
    assert verifier.verify(rs).id == "r"
    assert verifier.verify(es).id == "e"


def test_hs256_signed_with_the_rsa_public_key_is_rejected(jwks_file: str, rsa: RSAKey) -> None:
    # The classic confusion: an attacker signs HS256 with the (public) RSA key as secret.
    verifier = JwtVerifier(jwks=load_jwks(jwks_file))
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
    verifier = JwtVerifier(jwks=load_jwks(jwks_file))
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


def test_unreadable_jwks_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_jwks(str(tmp_path / "missing.json"))


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
    relaxed = JwtVerifier(secret=TEST_SECRET)
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
    verifier = JwtVerifier(jwks=load_jwks(str(path)))
    token = jwt.encode({"alg": "RS256"}, claims(), keys[0])
    with pytest.raises(AuthError, match="kid"):
        verifier.verify(token)
