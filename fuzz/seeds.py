#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/TARGET/, from the golden vectors and the documented
examples. Run from anywhere: `python3 fuzz/seeds.py`. Existing corpus files are kept."""

import base64
import hashlib
import json
import re
import urllib.parse
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
GOLDEN = json.loads((ROOT / "crates/writ-token/tests/vectors/tokens.json").read_text())


def payload(token):
    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def header(token):
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def write(target, seed):
    if isinstance(seed, str):
        seed = seed.encode()
    directory = FUZZ / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


cases = GOLDEN["cases"]
tokens = [c for c in cases if c["kind"] in ("mandate", "writ") and len(c["token"]) < 16384]
proofs = [c for c in cases if c["kind"] == "dpop"]

# tokens: mode 0 a token as sent; mode 1 its claims, which the target signs.
for case in tokens:
    write("tokens", b"\x00" + case["token"].encode())
    if "." in case["token"]:
        try:
            write("tokens", b"\x01" + payload(case["token"]))
        except ValueError:
            pass

# dpop: bit 0 signs the payload, bit 1 presents the golden access token.
for case in proofs:
    write("dpop", b"\x02" + case["token"].encode())
    write("dpop", b"\x00" + case["token"].encode())
    write("dpop", b"\x03" + payload(case["token"]))

# jwk: the golden key set, each key alone, the keys in proof headers, the identity point.
write("jwk", json.dumps(GOLDEN["jwks"]))
for key in GOLDEN["jwks"]["keys"]:
    write("jwk", json.dumps(key))
for case in proofs:
    jwk = header(case["token"]).get("jwk")
    if jwk:
        write("jwk", json.dumps(jwk))
write("jwk", json.dumps({"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
write("jwk", json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "p",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}]}))

# scope_details: every grant list and writ detail in the golden tokens, with calls.
calls = [
    b"\x00mcp_tool_call\x00files\x00read_file\x00{\"path\":\"/data/sales/q1.csv\"}",
    b"\x00mcp_request\x00files\x00tools/list",
    b"\x00http_request\x00crm\x00GET\x00/customers/42\x00expand=orders",
]
details = []
for case in tokens:
    try:
        claims = json.loads(payload(case["token"]))
    except ValueError:
        continue
    for name in ("grants", "authorization_details"):
        if isinstance(claims, dict) and name in claims:
            details.append(json.dumps(claims[name]).encode())
for detail in details:
    for call in calls:
        write("scope_details", detail + call)
write("scope_details", json.dumps([{"type": "http_request", "server": "crm", "methods": ["GET"],
    "path": "/customers/*", "query": {"object": {"optional": {"expand": {"exact": "orders"}}}}}]).encode() + calls[2])

# scope_subset: generator input; any bytes will do.
for seed in (b"\x00" * 64, b"\x01\x02\x03\x04" * 32, bytes(range(256)), b"\xff" * 64):
    write("scope_subset", seed)

# http_path: a path, a NUL, a query.
for seed in ("/data/sales/q1.csv", "/customers/../admin", "/customers/..;/admin", "/a/%252e%252e/b",
             "/a/%2E/b", "/a;b/c\0x=1&y=2", "/files/a%20b\0k=a&k=b", "/\0"):
    write("http_path", seed)

# token_form: the token exchange as the README shows it, with the golden mandate and writ detail.
mandate = next(c["token"] for c in tokens if c["name"] == "mandate")
writ_detail = next(d for d in details if b"mcp_tool_call" in d)
form = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token": mandate,
    "subject_token_type": "urn:writ:params:oauth:token-type:mandate",
    "resource": "https://gateway.writ.example/mcp/files",
    "authorization_details": writ_detail.decode(),
}
write("token_form", urllib.parse.urlencode(form))
write("token_form", urllib.parse.urlencode(form) + "&resource=x")
write("token_form", urllib.parse.urlencode({**form, "requested_token_type": "urn:writ:params:oauth:token-type:mandate"}))

# scim: the PatchOps offboarding sends.
schema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
write("scim", json.dumps({"schemas": [schema], "Operations": [{"op": "replace", "path": "active", "value": False}]}))
write("scim", json.dumps({"schemas": [schema], "Operations": [{"op": "Replace", "value": {"active": True}}]}))

# gateway_config: the README's example.
readme = (ROOT / "README.md").read_text()
for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
    if "[[routes]]" in block:
        write("gateway_config", block)

# audit_leaves: a checkpoint, then leaves (first byte: the kind).
root = base64.b64encode(hashlib.sha256(b"writ").digest()).decode()
checkpoint = f"log.writ.example\n5\n{root}\n"
writ_claims = json.loads(payload(next(c["token"] for c in tokens if c["name"] == "writ")))
call = writ_claims["authorization_details"][0]
issued = {"time": 1767225600, "event": {"agent": "report-bot", "mandate": "mnd_1", "call": call,
          "behaviour": {"learned": True, "at": 1767225600}}}
response = {"time": 1767225601, "event": {"agent": "report-bot", "mandate": "mnd_1",
            "tool": "files/read_file", "bytes": 2048, "learned": True}}
decided = {"time": 1767225602, "event": {"approval": "apr_1", "decision": "approve", "by": "alice"}}
write("audit_leaves", checkpoint.encode() + b"\0\x00" + json.dumps(issued).encode()
      + b"\0\x03" + json.dumps(response).encode() + b"\0\x02" + json.dumps(decided).encode())

# mcp_message: JSON-RPC bodies as MCP clients send them, with their mirroring headers.
write("mcp_message", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
      "params": {"name": "read_file", "arguments": {"path": "/data/sales/q1.csv"}}}).encode()
      + b"\0tools/call\0read_file")
write("mcp_message", json.dumps({"jsonrpc": "2.0", "id": "a", "method": "tools/list"}))
write("mcp_message", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
write("mcp_message", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}')
write("mcp_message", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "resources/read",
      "params": {"uri": "file:///a"}}).encode() + b"\0resources/read\0=?base64?ZmlsZTovLy9h?=")
