"""Bundle-signing keys: thumbprint kids, PEM and Development keys, the rotation's second key,
and a compact JWS that PyJWT verifies with nothing but the published JWK Set."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from shared.auth import parse_jwks
from shared.bundles import (
    BUNDLE_TYPE,
    JWKS_TYPE,
    SIGNED_JWKS_LIFETIME_SECONDS,
    SignedJwksCache,
    load_signing_keys,
    rfc7638_thumbprint,
    sign_compact_jws,
    sign_jwks,
)
from shared.errors import SettingError
from shared.settings import Settings
from tests.support.keys import write_signing_key
from tests.support.settings import product_env

# RFC 7638 section 3.1: this RSA key's thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
RFC7638_EXAMPLE = {
    "kty": "RSA",
    "kid": "example",
    "e": "AQAB",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
    "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
    "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQ"
    "Fh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
}


def test_kid_is_the_rfc7638_thumbprint():
    key = parse_jwks({"keys": [RFC7638_EXAMPLE]})["example"]
    assert rfc7638_thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def settings_with(**overrides: str) -> Settings:
    return Settings.from_env(product_env("UseDevelopmentStorage=true", **overrides))


async def test_bundle_jws_verifies_with_the_published_jwks_only(tmp_path: Path):
    write_signing_key(tmp_path / "current.pem")
    keys = await load_signing_keys(
        settings_with(BUNDLE_SIGNING_KEY_FILE=str(tmp_path / "current.pem"))
    )
    jws = await sign_compact_jws({"aud": "ccmsetup", "sub": "d"}, keys.current, typ=BUNDLE_TYPE)

    header = jwt.get_unverified_header(jws)
    published = parse_jwks(keys.jwks())
    claims = jwt.decode(jws, published[header["kid"]], algorithms=["RS256"], audience="ccmsetup")

    assert header == {"alg": "RS256", "typ": "cmboot-bundle+jwt", "kid": keys.current.public.kid}
    assert claims == {"aud": "ccmsetup", "sub": "d"}
    assert all(set(jwk) == {"kty", "use", "alg", "kid", "n", "e"} for jwk in keys.jwks()["keys"])


async def test_rotation_publishes_both_keys_and_old_bundles_keep_verifying(tmp_path: Path):
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    write_signing_key(old)
    write_signing_key(new)
    before = await load_signing_keys(settings_with(BUNDLE_SIGNING_KEY_FILE=str(old)))
    old_bundle = await sign_compact_jws({"aud": "ccmsetup"}, before.current, typ=BUNDLE_TYPE)

    # Step 1: announce the new key. Step 2: swap, the old key stays published as NEXT.
    announced = await load_signing_keys(
        settings_with(BUNDLE_SIGNING_KEY_FILE=str(old), BUNDLE_SIGNING_NEXT_KEY_FILE=str(new))
    )
    swapped = await load_signing_keys(
        settings_with(BUNDLE_SIGNING_KEY_FILE=str(new), BUNDLE_SIGNING_NEXT_KEY_FILE=str(old))
    )
    new_bundle = await sign_compact_jws({"aud": "ccmsetup"}, swapped.current, typ=BUNDLE_TYPE)

    assert [k["kid"] for k in announced.jwks()["keys"]] == [
        before.current.public.kid,
        swapped.current.public.kid,
    ]
    published = parse_jwks(swapped.jwks())
    for bundle in (old_bundle, new_bundle):
        kid = jwt.get_unverified_header(bundle)["kid"]
        jwt.decode(bundle, published[kid], algorithms=["RS256"], audience="ccmsetup")


async def test_signed_jwks_is_the_published_set_signed_by_the_current_key(tmp_path: Path):
    current, upcoming = tmp_path / "current.pem", tmp_path / "next.pem"
    write_signing_key(current)
    write_signing_key(upcoming)
    keys = await load_signing_keys(
        settings_with(
            BUNDLE_SIGNING_KEY_FILE=str(current), BUNDLE_SIGNING_NEXT_KEY_FILE=str(upcoming)
        )
    )

    jws = await sign_jwks(keys, now=1_700_000_000)

    header = jwt.get_unverified_header(jws)
    assert header == {"alg": "RS256", "typ": JWKS_TYPE, "kid": keys.current.public.kid}
    claims = jwt.decode(
        jws,
        keys.current.public.key,
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {
        **keys.jwks(),
        "iat": 1_700_000_000,
        "exp": 1_700_000_000 + SIGNED_JWKS_LIFETIME_SECONDS,
    }
    assert len(claims["keys"]) == 2
    assert keys.next is not None
    with pytest.raises(jwt.InvalidSignatureError):  # the next key never signs
        jwt.decode(jws, keys.next.key, algorithms=["RS256"], options={"verify_exp": False})


async def test_instances_serve_one_iat_per_hour_and_re_sign_each_hour(tmp_path: Path):
    """Each process caches its signed set; iat is the start of the hour, so two instances (two
    caches) agree and a device moving between them never meets an older set."""
    write_signing_key(tmp_path / "current.pem")
    keys = await load_signing_keys(
        settings_with(BUNDLE_SIGNING_KEY_FILE=str(tmp_path / "current.pem"))
    )
    hour = 1_700_002_800  # a whole hour
    first, second = SignedJwksCache(), SignedJwksCache()

    early = await first.get(keys, hour + 10)
    cached = await first.get(keys, hour + 20)
    late = await second.get(keys, hour + 3500)
    next_hour = await first.get(keys, hour + 3600)

    def iat(jws: str) -> int:
        return int(jwt.decode(jws, options={"verify_signature": False})["iat"])

    assert iat(early) == iat(late) == hour
    assert cached is early  # cached: one signature per process and hour
    assert iat(next_hour) == hour + 3600


async def test_development_key_is_generated_once_private_and_reused(tmp_path: Path):
    path = tmp_path / ".keys" / "bundle-signing.pem"
    settings = settings_with()
    assert settings.signing_key_file is None
    assert settings.is_development

    first = await load_signing_keys(settings, development_key_path=path)
    second = await load_signing_keys(settings, development_key_path=path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.current.public.kid == second.current.public.kid


async def test_a_small_rsa_key_is_refused_naming_the_setting(tmp_path: Path):
    write_signing_key(tmp_path / "small.pem", bits=1024)
    with pytest.raises(SettingError, match="BUNDLE_SIGNING_KEY_FILE"):
        await load_signing_keys(settings_with(BUNDLE_SIGNING_KEY_FILE=str(tmp_path / "small.pem")))
