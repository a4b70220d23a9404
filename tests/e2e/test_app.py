"""The app skeleton through real HTTP, and `bridge demo` as a user starts and stops it."""

import asyncio
import dataclasses
import os
import signal
import socket
import sys
import time

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import create_app
from bridge.config import Settings
from tests.e2e.sync_helpers import eventually


@pytest.fixture
async def client(database_url):
    settings = dataclasses.replace(
        Settings.from_env({}),
        database_url=database_url,
        secret_keys=(Fernet.generate_key().decode(),),
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def test_health_and_readiness(client):
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ok", "database": "ok", "migrations": "current"}
    assert ready.headers["X-Request-Id"]


async def test_metrics_are_prometheus_text(client, pool, tenant):
    from bridge.sync.jobs import JobQueue

    await JobQueue(pool).enqueue(tenant.id, "metrics-probe", "k", {})
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert "# TYPE bridge_http_requests_total counter" in text
    assert 'bridge_http_requests_total{route="/healthz",status="200"}' in text
    assert 'bridge_jobs{kind="metrics-probe",state="waiting"} 1' in text


async def _late_looks(client, slower_than: str) -> tuple[float, float]:
    """How often the event loop was looked at, and how many looks found it late by more than
    ``slower_than`` seconds (a bucket bound), as ``/metrics`` says."""
    text = await (await client.get("/metrics")).text()
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "bridge_event_loop_lag_seconds")
    values = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    count = values[("bridge_event_loop_lag_seconds_count", None)]
    return count, count - values[("bridge_event_loop_lag_seconds_bucket", slower_than)]


async def test_a_stalled_event_loop_shows_in_metrics(client):
    """An operator sees a process too busy to be quick: its loop's lateness is in /metrics."""

    async def looked() -> bool:
        return (await _late_looks(client, "0.05"))[0] > 0

    await eventually(looked, within=30)
    _, late_before = await _late_looks(client, "0.05")
    time.sleep(0.2)  # noqa: ASYNC251 - the stall: the process's one thread busy elsewhere

    async def late() -> bool:
        return (await _late_looks(client, "0.05"))[1] > late_before

    await eventually(late, within=30)


async def test_a_given_request_id_is_kept_and_a_bad_one_replaced(client):
    kept = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert kept.headers["X-Request-Id"] == "abc-123"
    replaced = await client.get("/healthz", headers={"X-Request-Id": "<script>"})
    assert replaced.headers["X-Request-Id"] != "<script>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_using(path: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(path in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


async def test_demo_starts_answers_and_ctrl_c_leaves_nothing_behind(tmp_path):
    port, sf_port, cp_port = _free_port(), _free_port(), _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "BRIDGE_SECRET_KEYS", "PUBLIC_URL")
    }
    env.update(BRIDGE_DATA_DIR=str(tmp_path / "data"), PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bridge.cli", "demo", "--contacts", "3"),
        *("--salesforce-port", str(sf_port), "--copernica-port", str(cp_port)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = b""
    try:
        while b"Press Ctrl-C" not in output:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, output.decode()
            output += line
        assert b"demo-password" in output
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 200, path
            # a contact edited in the Salesforce emulator shows up in the Copernica emulator
            async with http.post(
                f"http://127.0.0.1:{sf_port}/_sandbox/contacts",
                json={"LastName": "Demo", "Email": "demo@example.org"},
            ) as response:
                sf_id = (await response.json())["id"]
            for _ in range(100):
                async with http.get(
                    f"http://127.0.0.1:{cp_port}/_sandbox/databases/1/profiles"
                ) as response:
                    linked = [
                        p for p in (await response.json())["data"]
                        if p["fields"].get("SalesforceId") == sf_id
                    ]
                if linked:
                    break
                await asyncio.sleep(0.1)
            assert linked and linked[0]["fields"]["Email"] == "demo@example.org"
        assert _processes_using(str(tmp_path / "data"))  # its PostgreSQL runs
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert _processes_using(str(tmp_path / "data")) == []
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600
