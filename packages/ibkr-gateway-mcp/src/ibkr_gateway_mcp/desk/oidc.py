"""OpenID Connect login for the desk: authorization code with PKCE (S256), ID token checked with joserfc.

The desk is a confidential client when `desk.oidc_client_secret_env` names a secret (client_secret_basic),
else a public one. The ID token must be signed (RS256 or ES256) by a key of the issuer's key set, name the
issuer exactly, have the desk's client id in `aud`, be unexpired and carry the nonce of this login.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx2
from ibkr_gateway_core.config import DeskConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .sessions import LoginFlight, pkce_challenge

ALGORITHMS: Final = ("RS256", "ES256")
LEEWAY_SECONDS: Final = 60
MAX_DOCUMENT_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who logged in, from a checked ID token."""

    subject: str
    issuer: str
    name: str | None


class OidcClient:
    """The desk's side of one OpenID provider."""

    def __init__(self, desk: DeskConfig, redirect_uri: str, *, http: httpx2.AsyncClient | None = None) -> None:
        assert desk.oidc_issuer is not None and desk.oidc_client_id is not None
        self.issuer = desk.oidc_issuer
        self.client_id = desk.oidc_client_id
        self.scopes = desk.oidc_scopes
        self.redirect_uri = redirect_uri
        self._secret_env = desk.oidc_client_secret_env
        self._http = http or httpx2.AsyncClient(timeout=10.0, follow_redirects=False)
        self._discovery: dict[str, Any] | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def authorization_url(self, flight: LoginFlight) -> str:
        """Where the browser goes to log in."""
        endpoint = str((await self._document())["authorization_endpoint"])
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.scopes),
                "state": flight.state,
                "nonce": flight.nonce,
                "code_challenge": pkce_challenge(flight.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}?{query}"

    async def complete(self, code: str, flight: LoginFlight) -> OidcIdentity:
        """Exchange the code (with the PKCE verifier) and check the ID token.

        Raises:
            GatewayError: `DESK_LOGIN_REFUSED` when the provider refuses or the ID token fails a check.
        """
        document = await self._document()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": flight.code_verifier,
        }
        secret = os.environ.get(self._secret_env) if self._secret_env else None
        try:
            if secret:
                answer = await self._http.post(
                    str(document["token_endpoint"]), data=form, auth=(self.client_id, secret)
                )
            else:
                answer = await self._http.post(
                    str(document["token_endpoint"]), data={**form, "client_id": self.client_id}
                )
        except httpx2.HTTPError:
            raise _refused("the OpenID provider's token endpoint cannot be reached") from None
        if answer.status_code != 200:
            raise _refused(f"the OpenID provider refused the code (HTTP {answer.status_code})")
        body = _json_object(answer.content)
        id_token = body.get("id_token") if body else None
        if not isinstance(id_token, str):
            raise _refused("the OpenID provider returned no ID token")
        return await self._check(id_token, flight.nonce, document)

    async def _check(self, id_token: str, nonce: str, document: dict[str, Any]) -> OidcIdentity:
        keys = await self._get(str(document["jwks_uri"]))
        try:
            key_set = KeySet.import_key_set(keys)  # type: ignore[arg-type]
            claims = jwt.decode(id_token, key_set, algorithms=list(ALGORITHMS)).claims
        except (JoseError, ValueError, TypeError):
            raise _refused("the ID token's signature does not verify") from None
        now = time.time()
        audience = claims.get("aud")
        audiences: list[object] = list(audience) if isinstance(audience, list) else [audience]  # pyright: ignore[reportUnknownArgumentType]
        exp = claims.get("exp")
        problems = [
            ("issuer", claims.get("iss") != self.issuer),
            ("audience", self.client_id not in audiences),
            ("expiry", not isinstance(exp, int | float) or exp + LEEWAY_SECONDS < now),
            ("nonce", claims.get("nonce") != nonce),
            ("subject", not isinstance(claims.get("sub"), str) or not str(claims.get("sub")).strip()),
        ]
        failed = [name for name, bad in problems if bad]
        if failed:
            raise _refused("the ID token's " + ", ".join(failed) + " is wrong")
        name = claims.get("name") or claims.get("preferred_username")
        return OidcIdentity(
            subject=str(claims["sub"]), issuer=self.issuer, name=str(name)[:80] if isinstance(name, str) else None
        )

    async def _document(self) -> dict[str, Any]:
        if self._discovery is None:
            document = await self._get(self.issuer + "/.well-known/openid-configuration")
            if document.get("issuer") != self.issuer or not all(
                isinstance(document.get(k), str) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            ):
                raise _refused("the OpenID provider's discovery document does not match desk.oidc_issuer")
            self._discovery = document
        return self._discovery

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            answer = await self._http.get(url)
        except httpx2.HTTPError:
            raise _refused("the OpenID provider cannot be reached") from None
        body = _json_object(answer.content) if answer.status_code == 200 else None
        if body is None:
            raise _refused(f"the OpenID provider answered {url.rsplit('/', 1)[-1]!r} with HTTP {answer.status_code}")
        return body


def _json_object(content: bytes) -> dict[str, Any] | None:
    import json

    if len(content) > MAX_DOCUMENT_BYTES:
        return None
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None  # pyright: ignore[reportUnknownVariableType]


def _refused(reason: str) -> GatewayError:
    return GatewayError(ErrorCode.DESK_LOGIN_REFUSED, f"Login refused: {reason}.")
