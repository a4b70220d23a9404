"""Copernica sandbox benchmark: profile upsert round-trips and webhook delivery latency.

Starts the sandbox and a webhook receiver on localhost (OS-chosen ports), then measures
- the round-trip of a profile write (half creates, half updates by id), and
- the time from sending a profile update until its signed webhook arrived at the receiver.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from urllib.parse import parse_qsl

from aiohttp import web

from bench.harness import percentile, serve
from bridge.cli import run_loop
from bridge.copernica import CopernicaClient
from bridge.retry import RetryPolicy
from sandbox.copernica import SandboxSettings, create_app

UPSERTS = 400
HOOKS = 200


async def run() -> dict[str, list[float]]:
    sandbox, port = await serve(create_app(SandboxSettings(webhook_retry_base=0.05)))
    url = f"http://127.0.0.1:{port}"
    arrivals: dict[str, float] = {}
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        arrivals[form.get("fields[FirstName]", "")] = time.perf_counter()
        if len(arrivals) >= HOOKS:
            arrived.set()
        return web.Response(text="ok")

    receiver_app = web.Application()
    receiver_app.router.add_post("/hooks/copernica/{token}", hook)
    receiver, receiver_port = await serve(receiver_app)
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    results: dict[str, list[float]] = {"upsert": [], "webhook": []}
    try:
        async with CopernicaClient.for_sandbox(url, retry=RetryPolicy(base=0.01)) as client:
            await client.create_field(1, "SalesforceId", index=True)
            await client.create_field(1, "FirstName")
            known: dict[str, int] = {}
            for n in range(UPSERTS):  # as the bridge writes: create once, then update by id
                sf_id = f"003{n % (UPSERTS // 2):015d}"
                fields = {"SalesforceId": sf_id, "FirstName": f"n{n}"}
                started = time.perf_counter()
                if sf_id in known:
                    await client.update_profile_fields(known[sf_id], fields)
                else:
                    known[sf_id] = await client.create_profile(1, fields)
                results["upsert"].append((time.perf_counter() - started) * 1000)
            await client.create_webhook(f"{receiver_url}/hooks/copernica/bench", "update")
            ids = [p.id async for p in client.profiles(1)]
            sent: dict[str, float] = {}
            for n in range(HOOKS):
                name = f"hook{n}"
                sent[name] = time.perf_counter()
                await client.update_profile_fields(ids[n % len(ids)], {"FirstName": name})
            async with asyncio.timeout(20):
                await arrived.wait()
            results["webhook"] = [(arrivals[k] - sent[k]) * 1000 for k in sent if k in arrivals]
    finally:
        await receiver.cleanup()
        await sandbox.cleanup()
    return results


def main() -> None:
    results = run_loop(run())
    print("Copernica sandbox (localhost)            n     p50 ms   p99 ms   max ms")
    labels = {"upsert": "profile upsert round-trip", "webhook": "webhook delivery latency"}
    for key, label in labels.items():
        samples = results[key]
        print(
            f"  {label:<36} {len(samples):>5} {statistics.median(samples):>9.2f}"
            f" {percentile(samples, 0.99):>8.2f} {max(samples):>8.2f}"
        )


if __name__ == "__main__":
    main()
