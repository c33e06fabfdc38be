"""Verify authgate's identity assertion in a FastAPI (Starlette) app.

authgate adds a header (default X-Auth-Assertion) to every request it lets
through: a JWT of at most 60 s, signed with the gateway's private key
(EdDSA or ES256), naming the caller and bound to the request it was signed
for (method, Host header, path). This dependency checks the signature
against the gateway's published keys (/.well-known/jwks.json), the issuer,
the audience, the expiry and the binding, and returns the caller. A request
that did not pass the gateway, or carries an assertion of another request,
gets 401, whatever X-Auth-* headers it has.

    verify = AuthgateAssertion(jwks_url=..., issuer=..., audience=...)

    @app.get("/reports")
    def reports(caller: Principal = Depends(verify)):
        ...

Needs PyJWT with its crypto extra (pip install "pyjwt[crypto]").
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi import HTTPException, Request

ASSERTION_TYPE = "authgate-assertion+jwt"
MAX_LIFETIME = 60  # seconds from iat to exp
ALGORITHMS = ["EdDSA", "ES256"]  # never "none" or HS*: their key would be public


@dataclass
class Principal:
    """The caller an assertion vouches for."""

    subject: str
    roles: List[str] = field(default_factory=list)
    auth_method: str = "none"
    original_issuer: Optional[str] = None
    claims: Dict[str, str] = field(default_factory=dict)
    assertion_id: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.subject or self.auth_method == "none"


def key_algorithm(key) -> Optional[str]:
    """The one algorithm a published key verifies."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    return None


def request_binding(request: Request) -> dict:
    """The request as the gateway binds it: method, Host lower-cased, and
    the path of the request line exactly as received (no query string)."""
    raw = request.scope.get("raw_path")
    if raw is None:
        # Without the raw path the binding cannot be checked: refuse
        # rather than compare a decoded path.
        raise HTTPException(status_code=401, detail="server gives no raw path; cannot check the assertion")
    path = raw.decode("latin-1").split("?", 1)[0]
    return {
        "method": request.method,
        "host": request.headers.get("host", "").lower(),
        "path": path,
    }


class AuthgateAssertion:
    """A FastAPI dependency that verifies the assertion and returns the
    caller. With allow_anonymous, the anonymous assertions of public paths
    are accepted (the caller is then Principal.anonymous)."""

    def __init__(self, jwks_url: str, issuer: str, audience: str,
                 header: str = "X-Auth-Assertion", allow_anonymous: bool = False,
                 leeway: int = 5):
        # PyJWKClient caches the key set and fetches it again for a kid it
        # does not know: a key rotation needs no restart.
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)
        self._issuer = issuer
        self._audience = audience
        self._header = header
        self._allow_anonymous = allow_anonymous
        self._leeway = leeway

    def verify(self, request: Request) -> Principal:
        values = request.headers.getlist(self._header)
        if len(values) != 1 or not values[0]:
            raise HTTPException(status_code=401, detail="request did not come through the gateway")
        token = values[0]
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != ASSERTION_TYPE:
                raise jwt.InvalidTokenError("not an authgate assertion")
            for h in ("jku", "jwk", "x5u", "x5c", "crit"):
                if h in header:
                    raise jwt.InvalidTokenError("header %s refused" % h)
            key = self._jwks.get_signing_key_from_jwt(token).key
            # Each key verifies only its own algorithm.
            alg = key_algorithm(key)
            if alg is None or header.get("alg") != alg:
                raise jwt.InvalidTokenError("key and algorithm do not match")
            claims = jwt.decode(
                token, key, algorithms=[alg],
                audience=self._audience, issuer=self._issuer, leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "jti"]},
            )
        except (jwt.PyJWTError, ValueError) as e:
            raise HTTPException(status_code=401, detail="invalid assertion") from e
        if claims["exp"] - claims["iat"] > MAX_LIFETIME:
            raise HTTPException(status_code=401, detail="invalid assertion")
        if claims.get("req") != request_binding(request):
            # A valid assertion of another request: replayed.
            raise HTTPException(status_code=401, detail="assertion signed for another request")
        p = Principal(
            subject=claims.get("sub", ""),
            roles=list(claims.get("roles") or []),
            auth_method=claims.get("auth_method", "none"),
            original_issuer=claims.get("orig_iss"),
            claims=dict(claims.get("claims") or {}),
            assertion_id=claims["jti"],
        )
        if p.anonymous and not self._allow_anonymous:
            raise HTTPException(status_code=401, detail="authentication required")
        return p

    def __call__(self, request: Request) -> Principal:
        return self.verify(request)
