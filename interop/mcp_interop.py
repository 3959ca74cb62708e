#!/usr/bin/env python3
"""Runs MCP software that no one on the Writ project wrote through Writ, end to end.

- The client is the official Python MCP SDK (PyPI `mcp`), unmodified. It starts
  `writ sidecar --stdio` the way a desktop assistant starts an MCP server, and also
  connects to `writ sidecar --listen` over streamable HTTP.
- The server is the MCP reference server from npm (`@modelcontextprotocol/server-everything`),
  which `writ gateway run` starts as a stdio child process behind a route.

Between them run the real `writ issuer` and `writ gateway`, on 127.0.0.1, in a temporary
directory. The client lists its tools (filtered to the mandate), makes allowed calls, is
refused calls outside the mandate with readable tool errors, and is stopped by a
revocation; `writ trace` then draws the first call back to the human.

Usage (from the repository root, after `cargo build -p writ` and `npm install` of the
server; `.ci/run` does all of it):

    python3 interop/mcp_interop.py target/debug/writ path/to/server-everything/dist/index.js

Exits non-zero on the first failed check.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mcp import Client, StdioServerParameters

checks = 0


def check(condition, what, detail=""):
    global checks
    if not condition:
        print(f"FAIL: {what} {detail}", file=sys.stderr)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"FAIL: {url} never answered 200")


def tool_text(result):
    return " ".join(getattr(block, "text", "") for block in result.content)


class Deployment:
    def __init__(self, writ, server, work):
        self.writ = writ
        self.work = work
        self.processes = []
        self.issuer = f"http://127.0.0.1:{free_port()}"
        self.gateway = f"http://127.0.0.1:{free_port()}"
        self.route = f"{self.gateway}/mcp/everything"
        self.server = server

    def path(self, name):
        return str(self.work / name)

    def run(self, *args, key=None):
        env = dict(os.environ, WRIT_ISSUER=self.issuer)
        if key:
            env["WRIT_KEY"] = self.path(key)
        done = subprocess.run([self.writ, *args], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"FAIL: writ {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(self, *args):
        log = open(self.path(f"{args[0]}-{len(self.processes)}.log"), "w")
        process = subprocess.Popen([self.writ, *args], stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def stop(self):
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def deploy(self):
        init = self.run("issuer", "init", "--data", self.path("data"), "--url", self.issuer,
                        "--admin-key", self.path("admin.key"))
        self.log_key = next(line.split(None, 2)[2] for line in init.splitlines()
                            if line.startswith("log verifier:"))
        self.start("issuer", "run", "--data", self.path("data"),
                   "--listen", self.issuer.removeprefix("http://"))
        wait_http(f"{self.issuer}/healthz")
        for name in ["alice", "agent", "gateway"]:
            self.run("keys", "generate", "--out", self.path(f"{name}.key"))
        self.run("human", "add", "alice", "--key-file", self.path("alice.key"), key="admin.key")
        self.run("tool", "add", "everything", "--kind", "mcp", "--tool", "echo",
                 "--tool", "get-sum", "--tool", "get-env", key="admin.key")
        self.run("entitlement", "grant", "--subject", "alice",
                 "--tools", "everything/echo,everything/get-sum,everything/*", key="admin.key")
        self.run("gateway", "add", "gw", "--audience", self.gateway,
                 "--key-file", self.path("gateway.key"), key="admin.key")
        Path(self.path("everything.token")).write_text("everything-upstream-secret-5d1e\n")
        Path(self.path("gateway.toml")).write_text(f"""
listen = "{self.gateway.removeprefix('http://')}"
public_url = "{self.gateway}"
issuer = "{self.issuer}"
key_file = "{self.path('gateway.key')}"
spool_dir = "{self.path('spool')}"

[[routes]]
name = "everything"
path = "/mcp/everything"
kind = "mcp"
command = ["node", "{self.server}", "stdio"]
credential = {{ type = "env", variable = "EVERYTHING_TOKEN", file = "{self.path('everything.token')}" }}
""")
        self.start("gateway", "run", "--config", self.path("gateway.toml"))
        wait_http(f"{self.gateway}/healthz")
        self.run("agent", "add", "bot", "--tools", "everything/echo,everything/get-sum,everything/*",
                 "--key-file", self.path("agent.key"), key="alice.key")
        grants = [
            {"type": "mcp_tool_call", "server": "everything", "tool": "echo",
             "arguments": {"object": {"required": {"message": {"max_length": 64}}}}},
            {"type": "mcp_tool_call", "server": "everything", "tool": "get-sum",
             "arguments": {"object": {"required": {"a": {"range": {"min": 0, "max": 100}},
                                                   "b": {"range": {"min": 0, "max": 100}}}}}},
            {"type": "mcp_request", "server": "everything",
             "methods": ["initialize", "notifications/initialized", "tools/list"]},
        ]
        args = ["mandate", "grant", "bot", "--task", "Add up the numbers in the report",
                "--out", self.path("mandate.jwt")]
        for grant in grants:
            args += ["--grant", json.dumps(grant)]
        granted = json.loads(self.run(*args, key="alice.key").split("\n", 1)[1])
        self.mandate = granted["id"]

    def sidecar_args(self):
        return ["sidecar", "--gateway", self.route, "--key", self.path("agent.key"),
                "--mandate-file", self.path("mandate.jwt")]


async def session_checks(client, how):
    tools = sorted(tool.name for tool in (await client.list_tools()).tools)
    check(tools == ["echo", "get-sum"], f"{how}: tools/list is cut to the mandate", tools)
    echo = await client.call_tool("echo", {"message": "hello through writ"})
    check(not echo.is_error and "hello through writ" in tool_text(echo),
          f"{how}: an allowed echo reaches server-everything", tool_text(echo))
    total = await client.call_tool("get-sum", {"a": 2, "b": 3})
    check(not total.is_error and "5" in tool_text(total), f"{how}: get-sum(2, 3) is 5",
          tool_text(total))
    wide = await client.call_tool("get-sum", {"a": 2, "b": 1000})
    check(wide.is_error and "is outside mandate" in tool_text(wide)
          and "[outside_mandate]" in tool_text(wide),
          f"{how}: an argument outside its range is a readable tool error", tool_text(wide))
    env = await client.call_tool("get-env", {})
    check(env.is_error and "everything-upstream-secret" not in tool_text(env),
          f"{how}: get-env, outside the mandate, is refused", tool_text(env))


async def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    writ = str(Path(sys.argv[1]).resolve())
    server = str(Path(sys.argv[2]).resolve())
    with tempfile.TemporaryDirectory() as work:
        deployment = Deployment(writ, server, Path(work))
        try:
            deployment.deploy()
            stdio = StdioServerParameters(command=writ, args=[*deployment.sidecar_args(), "--stdio"],
                                          env={"RUST_LOG": "warn"})
            async with Client(stdio) as client:
                check(client.server_info.name == "mcp-servers/everything",
                      "stdio: the Python SDK connects through the sidecar", client.server_info)
                await session_checks(client, "stdio")

            port = free_port()
            deployment.start(*deployment.sidecar_args(), "--listen", f"127.0.0.1:{port}")
            wait_for_port(port)
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                check(client.server_info.name == "mcp-servers/everything",
                      "http: the Python SDK connects to the sidecar over streamable HTTP")
                await session_checks(client, "http")
                deployment.run("revoke", "mandate", deployment.mandate, "--reason", "interop",
                               key="alice.key")
                started = time.monotonic()
                after = await client.call_tool("echo", {"message": "still there?"})
                check(after.is_error and "[mandate_revoked]" in tool_text(after)
                      and time.monotonic() - started < 1.0,
                      "http: the next call after the revocation is refused", tool_text(after))

            trace = json.loads(deployment.run("trace", deployment.mandate, "--json",
                                              "--log-key", deployment.log_key, key="admin.key"))
            kinds = [record["kind"] for record in trace["records"]]
            check(trace["verified"] and kinds[:3] == ["human_registered", "agent_registered",
                                                      "mandate_granted"]
                  and kinds.count("writ_issued") >= 6,
                  "writ trace proves the mandate's line back to alice", kinds)
            verified = deployment.run("audit", "verify", "--log-key", deployment.log_key,
                                      key="admin.key")
            check(verified.startswith("audit log verified"), "writ audit verify passes")
        finally:
            deployment.stop()
    print(f"{checks} passed, 0 failed")


def wait_for_port(port, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"FAIL: nothing listens on port {port}")


if __name__ == "__main__":
    asyncio.run(main())
