#!/usr/bin/env python3
"""Cross-checks Writ's tokens and DPoP proofs with an independent JOSE implementation.

jwcrypto (https://github.com/latchset/jwcrypto) verifies what Writ signs, computes RFC 7638
thumbprints that must equal Writ's, and makes DPoP proofs that Writ must accept (and
malformed ones it must refuse).

Run from the repository root after `pip install jwcrypto`:

    python3 interop/jose_interop.py

Exits non-zero on the first disagreement.
"""

import base64
import hashlib
import json
import subprocess
import sys
import time

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

DRIVER = ["cargo", "run", "--quiet", "-p", "writ-token", "--example", "interop", "--"]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header_of(token):
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def verify_with(token, key):
    parsed = jws.JWS()
    parsed.deserialize(token)
    parsed.verify(key)
    return json.loads(parsed.payload)


def rust_verify_proof(proof, method, uri, access_token, now):
    request = json.dumps(
        {"proof": proof, "method": method, "uri": uri, "access_token": access_token, "now": now}
    )
    result = subprocess.run(
        DRIVER + ["verify-proof"], input=request, capture_output=True, text=True
    )
    return result.returncode, json.loads(result.stdout)


def python_proof(key, alg, method, uri, access_token, iat, typ="dpop+jwt"):
    claims = {
        "jti": b64url(hashlib.sha256(str(time.time_ns()).encode()).digest()[:12]),
        "htm": method,
        "htu": uri,
        "iat": iat,
        "ath": b64url(hashlib.sha256(access_token.encode()).digest()),
    }
    token = jws.JWS(json.dumps(claims).encode())
    header = {"typ": typ, "alg": alg, "jwk": key.export_public(as_dict=True)}
    token.add_signature(key, None, json_encode(header))
    return token.serialize(compact=True)


def main():
    emitted = json.loads(subprocess.check_output(DRIVER + ["emit"], text=True))
    issuer_keys = jwk.JWKSet.from_json(json.dumps(emitted["issuer_jwks"]))
    issuer_key = issuer_keys.get_key(emitted["issuer_kid"])

    # Writ -> jwcrypto: the issuer's signatures and the token shapes.
    for kind, typ in (("writ", "writ+jwt"), ("mandate", "mandate+jwt")):
        token = emitted[kind]
        header = header_of(token)
        check(header["typ"] == typ and header["alg"] == "EdDSA", f"{kind} header is typ {typ}, alg EdDSA")
        claims = verify_with(token, issuer_key)
        check(True, f"jwcrypto verifies the {kind} signature")
        check(claims["cnf"]["jkt"] == emitted["agent_jkt"], f"{kind} cnf.jkt is the agent key thumbprint")

    ath = b64url(hashlib.sha256(emitted["writ"].encode()).digest())
    for alg, proof in emitted["proofs"].items():
        header = header_of(proof["proof"])
        key = jwk.JWK(**header["jwk"])
        claims = verify_with(proof["proof"], key)
        check(True, f"jwcrypto verifies Writ's {alg} DPoP proof with its embedded jwk")
        check(header["typ"] == "dpop+jwt" and header["alg"] == alg, f"{alg} proof header")
        check(claims["ath"] == ath, f"{alg} proof ath is SHA-256 of the writ")
        check(claims["htm"] == emitted["method"] and claims["htu"] == emitted["uri"], f"{alg} proof htm/htu")
        check(key.thumbprint() == proof["jkt"], f"{alg} RFC 7638 thumbprints agree")
        check("d" not in header["jwk"], f"{alg} proof jwk has no private part")
    check(
        jwk.JWK(**emitted["proofs"]["EdDSA"]["jwk"]).thumbprint() == emitted["agent_jkt"],
        "agent thumbprint agrees",
    )

    # jwcrypto -> Writ: proofs made by an independent implementation verify in Writ.
    now = emitted["now"]
    for alg, params in (("EdDSA", {"kty": "OKP", "crv": "Ed25519"}), ("ES256", {"kty": "EC", "crv": "P-256"})):
        key = jwk.JWK.generate(**params)
        proof = python_proof(key, alg, emitted["method"], emitted["uri"], emitted["writ"], now)
        code, result = rust_verify_proof(proof, emitted["method"], emitted["uri"], emitted["writ"], now)
        check(code == 0 and result.get("jkt") == key.thumbprint(), f"Writ verifies a jwcrypto {alg} proof; thumbprints agree")

        wrong_uri = python_proof(key, alg, emitted["method"], "https://elsewhere.example/x", emitted["writ"], now)
        code, result = rust_verify_proof(wrong_uri, emitted["method"], emitted["uri"], emitted["writ"], now)
        check(code == 1 and result.get("error") == "dpop_uri_mismatch", f"Writ refuses a jwcrypto {alg} proof for another URI")

        wrong_typ = python_proof(key, alg, emitted["method"], emitted["uri"], emitted["writ"], now, typ="JWT")
        code, result = rust_verify_proof(wrong_typ, emitted["method"], emitted["uri"], emitted["writ"], now)
        check(code == 1 and result.get("error") == "dpop_wrong_type", f"Writ refuses a jwcrypto {alg} proof with typ JWT")

    print(f"{checks} passed, 0 failed")


if __name__ == "__main__":
    main()
