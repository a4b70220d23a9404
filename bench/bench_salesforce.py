"""Salesforce sandbox benchmark: REST round-trips, CDC write → event delivery, and one
200-record sObject Collections update, all through the bridge's own client and stream.

Prints p50/p99 in milliseconds. Everything runs on localhost (OS-chosen port).
"""

from __future__ import annotations

import time

from bench.harness import percentile, serve
from bridge.cli import run_loop
from bridge.retry import RetryPolicy
from bridge.salesforce import ClientCredentialsLogin, SalesforceClient
from bridge.salesforce.stream import ChangeEvent, MemoryReplayStore, SalesforceStream
from sandbox.salesforce import SandboxSettings, create_app

ROUND_TRIPS = 300
CDC_EVENTS = 200
COLLECTION_RUNS = 10


async def run() -> dict[str, list[float]]:
    settings = SandboxSettings()
    runner, port = await serve(create_app(settings))
    url = f"http://localhost:{port}"
    login = ClientCredentialsLogin(settings.client_id, settings.client_secret, url)
    results: dict[str, list[float]] = {"rest": [], "cdc": [], "collections": []}
    try:
        async with SalesforceClient(login, retry=RetryPolicy(base=0.01)) as client:
            record_id = await client.create("Contact", {"LastName": "Bench"})
            for n in range(ROUND_TRIPS):
                started = time.perf_counter()
                if n % 2:
                    await client.update("Contact", record_id, {"Title": f"T{n}"})
                else:
                    await client.get("Contact", record_id, ["Id", "Title"])
                results["rest"].append(time.perf_counter() - started)

            async with SalesforceStream(client, replay_store=MemoryReplayStore()) as stream:
                events = aiter(stream)
                for n in range(CDC_EVENTS):
                    started = time.perf_counter()
                    await client.update("Contact", record_id, {"Title": f"C{n}"})
                    while not isinstance(await anext(events), ChangeEvent):
                        pass
                    results["cdc"].append(time.perf_counter() - started)

            created = await client.create_many(
                "Contact", [{"LastName": f"B{i}"} for i in range(200)]
            )
            ids = [r.id for r in created]
            for n in range(COLLECTION_RUNS):
                started = time.perf_counter()
                outcome = await client.update_many(
                    "Contact", [{"id": i, "Title": f"U{n}"} for i in ids]
                )
                results["collections"].append(time.perf_counter() - started)
                assert all(r.success for r in outcome)
    finally:
        await runner.cleanup()
    return results


def main() -> None:
    results = run_loop(run())
    rows = [
        ("REST round-trip (get/update)", "rest"),
        ("CDC write → event delivered", "cdc"),
        ("Collections update, 200 records", "collections"),
    ]
    print("Salesforce sandbox benchmark (ms)")
    print(f"{'measure':<34}{'n':>6}{'p50':>10}{'p99':>10}")
    for label, key in rows:
        samples = results[key]
        print(
            f"{label:<34}{len(samples):>6}"
            f"{percentile(samples, 0.5) * 1000:>10.2f}{percentile(samples, 0.99) * 1000:>10.2f}"
        )


if __name__ == "__main__":
    main()
