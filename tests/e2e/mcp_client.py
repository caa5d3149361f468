"""An MCP client for the end-to-end tests of `decision-gate mcp`, built on the MCP Python SDK
(a client nobody in this project wrote), driven by the Rust test one command at a time.

    mcp_client.py stdio SERVER_COMMAND [ARG...]     start the server, talk over its stdio
    mcp_client.py http URL [BEARER_TOKEN]           talk streamable HTTP to a running server

Each line on standard input is one command as JSON; each answer is one JSON line on
standard output, in the same order:

    {"listTools": true}                       -> {"tools": [names...]}
    {"tool": NAME, "arguments": {...}}        -> {"isError": bool, "text": [...],
                                                  "structured": {...}, "progress": [...]}

Every tool call asks for progress notifications; "progress" lists those that arrived
({"progress", "total", "message"}). Standard input closing ends the session.
"""

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def answer(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def run(client):
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        if command.get("listTools"):
            listed = await client.list_tools()
            answer({"tools": [t.name for t in listed.tools]})
            continue
        progress = []

        async def on_progress(value, total, message):
            progress.append({"progress": value, "total": total, "message": message})

        result = await client.call_tool(
            command["tool"], command.get("arguments") or {}, progress_callback=on_progress
        )
        answer(
            {
                "isError": bool(result.is_error),
                "text": [c.text for c in result.content if getattr(c, "type", None) == "text"],
                "structured": result.structured_content,
                "progress": progress,
            }
        )


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        server = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:])
        async with Client(server) as client:
            await run(client)
    elif mode == "http":
        headers = {"Authorization": f"Bearer {sys.argv[3]}"} if len(sys.argv) > 3 else {}
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
            async with Client(streamable_http_client(sys.argv[2], http_client=http)) as client:
                await run(client)
    else:
        sys.exit(f"unknown mode {mode}: stdio or http")


anyio.run(main)
