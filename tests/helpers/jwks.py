"""Real signing keys, tokens shaped like Better Auth's, and a JWKS endpoint on a loopback port."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://app.example.com"
AUDIENCE = "https://app.example.com"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: Any

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    @property
    def jwk(self) -> dict[str, Any]:
        """The public JWK as Better Auth publishes it: with `kid` and `alg`, no `use`."""
        public = self.public_key
        if isinstance(public, ed25519.Ed25519PublicKey):
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, **header}
        )


def generate_key(alg: str, kid: str | None = None) -> SigningKey:
    kid = kid or f"{alg.lower()}-{uuid4().hex[:8]}"
    if alg == "EdDSA":
        return SigningKey(kid, alg, ed25519.Ed25519PrivateKey.generate())
    if alg == "ES256":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    if alg == "ES512":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP521R1()))
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def better_auth_claims(user_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A Better Auth JWT payload: the user row plus `sub`, `iat`, `exp`, `iss`, `aud`."""
    now = int(time.time())
    user_id = user_id or f"ba-{uuid4().hex[:12]}"
    claims: dict[str, Any] = {
        "id": user_id,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "emailVerified": True,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
        "tier": "pro",
        "sub": user_id,
        "iat": now,
        "exp": now + 900,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """`alg: none`: header and payload with an empty signature."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hmac_token(secret: bytes, claims: dict[str, Any], kid: str | None = None) -> str:
    """HS256 by hand, so that any bytes (even a public key) can be the secret."""
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class JwksServer:
    """Serves `{"keys": [...]}` over HTTP/1.1 on 127.0.0.1; `keys` and `up` can change any time."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.up = True
        self.requests = 0
        self.trickle: float | None = None
        """When set, the body goes out 2 bytes at a time, this many seconds apart."""
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/auth/jwks"

    async def start(self) -> JwksServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening: fetches now fail with a refused connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.up:
                status, body = "200 OK", json.dumps({"keys": self.keys}).encode()
            else:
                status, body = "503 Service Unavailable", b'{"error": "down"}'
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode())
            step = 2 if self.trickle is not None else len(body)
            for start in range(0, len(body), step):
                writer.write(body[start : start + step])
                await writer.drain()
                if self.trickle is not None:
                    await asyncio.sleep(self.trickle)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
