"""A FastAPI app that trusts authgate through its signed assertion.

Run it behind the gateway (upstream.url: http://127.0.0.1:8081):

    AUTHGATE_JWKS_URL=http://127.0.0.1:8080/.well-known/jwks.json \
    AUTHGATE_ISSUER=https://login.example.com \
    AUTHGATE_AUDIENCE=http://127.0.0.1:8081 \
    uvicorn app:app --host 127.0.0.1 --port 8081
"""

import os

from fastapi import Depends, FastAPI, HTTPException, Request

from authgate_assertion import AuthgateAssertion, Principal

_settings = dict(
    jwks_url=os.environ["AUTHGATE_JWKS_URL"],
    issuer=os.environ["AUTHGATE_ISSUER"],
    audience=os.environ["AUTHGATE_AUDIENCE"],
)
# Protected routes want a caller; public routes accept the anonymous
# assertion the gateway sends there, which still proves the request
# passed the gateway.
caller = AuthgateAssertion(**_settings)
anyone = AuthgateAssertion(allow_anonymous=True, **_settings)

app = FastAPI()


def describe(p: Principal, request: Request) -> dict:
    return {
        "subject": p.subject,
        "roles": p.roles,
        "auth_method": p.auth_method,
        "original_issuer": p.original_issuer,
        "claims": p.claims,
        "method": request.method,
        "path": request.url.path,
    }


@app.get("/public/{rest:path}")
def public(request: Request, p: Principal = Depends(anyone)):
    return describe(p, request)


@app.get("/admin/{rest:path}")
def admin(request: Request, p: Principal = Depends(caller)):
    if "admin" not in p.roles:
        raise HTTPException(status_code=403, detail="admin only")
    return describe(p, request)


@app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
def api(request: Request, p: Principal = Depends(caller)):
    return describe(p, request)
