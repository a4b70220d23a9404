"""``bridge sandbox salesforce``: serve the Salesforce sandbox until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from bridge.cli import run_loop

from . import SandboxSettings, create_app

DEFAULT_PORT = 8801


def parse(argv: list[str]) -> tuple[argparse.Namespace, SandboxSettings]:
    defaults = SandboxSettings()
    parser = argparse.ArgumentParser(prog="bridge sandbox salesforce")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--username", default=defaults.username)
    parser.add_argument("--password", default=defaults.password)
    parser.add_argument("--security-token", default=defaults.security_token)
    parser.add_argument("--client-id", default=defaults.client_id)
    parser.add_argument("--client-secret", default=defaults.client_secret)
    parser.add_argument("--jwt-certificate", type=Path, help="PEM certificate for JWT bearer")
    parser.add_argument("--session-seconds", type=float, default=defaults.session_seconds)
    parser.add_argument("--daily-api-max", type=int, default=defaults.daily_api_max)
    parser.add_argument("--connect-timeout", type=float, default=defaults.connect_timeout)
    parser.add_argument("--event-retention", type=float, default=defaults.event_retention)
    parser.add_argument(
        "--without-bridge-objects",
        action="store_true",
        help="run without the bridge's custom objects (as if the package were not deployed)",
    )
    parser.add_argument(
        "--soap-login", action="store_true",
        help="allow SOAP login() (off by default, as in new orgs)",
    )
    parser.add_argument(
        "--collections-call-options", action="store_true",
        help="put the Sforce-Call-Options client into changeOrigin for sObject Collections writes",
    )
    args = parser.parse_args(argv)
    settings = SandboxSettings(
        username=args.username,
        password=args.password,
        security_token=args.security_token,
        client_id=args.client_id,
        client_secret=args.client_secret,
        jwt_certificate_pem=args.jwt_certificate.read_text() if args.jwt_certificate else None,
        session_seconds=args.session_seconds,
        daily_api_max=args.daily_api_max,
        connect_timeout=args.connect_timeout,
        event_retention=args.event_retention,
        bridge_objects=not args.without_bridge_objects,
        soap_login=args.soap_login,
        collections_call_options=args.collections_call_options,
    )
    return args, settings


async def serve(host: str, port: int, settings: SandboxSettings) -> None:
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]  # the real one when --port 0
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
    print(f"Salesforce sandbox on {url}")
    print(f"  user {settings.username}  password {settings.password}")
    print(f"  security token {settings.security_token}")
    print(f"  OAuth client {settings.client_id} / {settings.client_secret}")
    print(f"  refresh token {settings.refresh_token}")
    print(f"  token {url}/services/oauth2/token (client credentials: the URL is the My Domain)")
    soap = "allowed" if settings.soap_login else "refused, as in new orgs (--soap-login allows it)"
    print(f"  SOAP login {url}/services/Soap/u/59.0 {soap}")
    print(f"  admin API {url}/_sandbox/  (more orgs: POST {url}/_sandbox/orgs)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    args, settings = parse(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(args.host, args.port, settings))
    return 0
