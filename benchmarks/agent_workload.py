"""What bench_agent.py's workers run (imported through BELUGA_IMPORTS=benchmarks.agent_workload): an
LLM-style agent workflow (plan, 5 tool calls fanned out, summarise, wait for a person's signal) whose
two LLM calls go to a fake provider over HTTP (`BENCH_LLM_URL`) with async activities.

The provider answers 429 with `Retry-After` past its quota; the LLM activity raises an error carrying
`retry_after`, as an HTTP client's 429 error does, so the next attempt waits exactly that long (issue 18
item 4). Three LLM activities, the same call: `llm_limited` is declared with the provider's quota as a
fleet-wide limit (`rate_limit`, `rate_key="llm-provider"`); `llm_unlimited` (the baseline) is not, and
relies on the 429s alone; `llm_prioritized` also holds at most `BENCH_LLM_CONCURRENT` calls at once, so
that calls wait for a concurrency permit, which goes by the runs' priorities. The workflow's input says
which one to call.

Not a test module and not part of the library: only bench_agent.py's workers import it.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any
from urllib.parse import urlsplit

from beluga import workflow

QUOTA = float(os.environ.get("BENCH_LLM_QUOTA", "10"))  # the provider's requests a second (the workers' copy)
CONCURRENT = int(os.environ.get("BENCH_LLM_CONCURRENT", "4"))  # llm_prioritized's calls at once
RETRY = workflow.RetryPolicy(max_attempts=0, initial_interval=0.5, max_interval=5.0)  # never give up


class RateLimited(Exception):
    """The provider's 429: `retry_after` is its `Retry-After`, in seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429 Too Many Requests (Retry-After: {retry_after:g})")
        self.retry_after = retry_after


async def _post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 POST to the provider, on asyncio streams (no HTTP client library is installed here)."""
    url = urlsplit(os.environ["BENCH_LLM_URL"])
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        data = json.dumps(body).encode()
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, payload


async def _complete(prompt: str) -> str:
    info = workflow.activity_info()
    status, headers, payload = await _post("/v1/complete", {
        "prompt": prompt, "call": f"{info.workflow_id}/{info.seq}", "attempt": info.attempt})
    if status == 429:
        raise RateLimited(float(headers.get("retry-after", "1")))
    if status != 200:
        raise RuntimeError(f"provider answered {status}")
    return str(json.loads(payload)["text"])


@workflow.activity(name="llm_limited", rate_limit=QUOTA, rate_key="llm-provider", retry=RETRY)
async def llm_limited(prompt: str) -> str:
    return await _complete(prompt)


@workflow.activity(name="llm_prioritized", rate_limit=QUOTA, max_concurrent=CONCURRENT,
                   rate_key="llm-provider-prioritized", retry=RETRY)
async def llm_prioritized(prompt: str) -> str:
    return await _complete(prompt)


@workflow.activity(name="llm_unlimited", retry=RETRY)
async def llm_unlimited(prompt: str) -> str:
    return await _complete(prompt)


@workflow.activity(name="agent_tool")
async def agent_tool(spec: dict[str, Any]) -> str:
    """A tool call (a search, a database read): I/O-bound, not rate-limited."""
    await asyncio.sleep(spec["seconds"])
    return f"tool {spec['i']} done"


@workflow.defn(name="agent_run")
def agent_run(ctx: workflow.WorkflowContext, spec: dict[str, Any]) -> dict[str, Any]:
    llm = spec["llm"]
    plan = ctx.execute_activity(llm, f"plan: {spec['task']}")
    tools = ctx.wait_all([ctx.start_activity(agent_tool, {"i": i, "seconds": spec["tool_seconds"]})
                          for i in range(5)])
    summary = ctx.execute_activity(llm, f"summarise {plan} with {len(tools)} tool results")
    approved = ctx.receive_signal("approve").receive()
    return {"summary": summary, "approved": approved}
