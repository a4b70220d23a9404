"""``bridge sandbox copernica``: serve the Copernica sandbox until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvloop
from aiohttp import web

from sandbox.copernica.app import create_app
from sandbox.copernica.runtime import SandboxSettings

DEFAULT_PORT = 8802


def main(argv: list[str]) -> int:
    defaults = SandboxSettings()
    parser = argparse.ArgumentParser(prog="bridge sandbox copernica", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--token", default=defaults.api_token, help="the API token")
    parser.add_argument("--timezone", default=defaults.timezone)
    parser.add_argument(
        "--database", default=defaults.database_name, help="name of the first database"
    )
    parser.add_argument("--jwt-lifetime", type=float, default=defaults.jwt_lifetime, help="seconds")
    parser.add_argument("--seed", type=int, default=defaults.statistics_seed)
    parser.add_argument("--signing-key", type=Path, help="RSA private key (PEM) to sign webhooks")
    parser.add_argument(
        "--webhook-retry-base", type=float, default=defaults.webhook_retry_base, help="seconds"
    )
    parser.add_argument(
        "--webhook-concurrency", type=int, default=defaults.webhook_concurrency,
        help="deliveries in flight per webhook (1 keeps their order)",
    )
    args = parser.parse_args(argv)
    settings = SandboxSettings(
        api_token=args.token,
        timezone=args.timezone,
        database_name=args.database,
        jwt_lifetime=args.jwt_lifetime,
        statistics_seed=args.seed,
        signing_key_pem=args.signing_key.read_bytes() if args.signing_key else None,
        webhook_retry_base=args.webhook_retry_base,
        webhook_concurrency=args.webhook_concurrency,
    )
    base = f"http://{args.host}:{args.port}"
    print(f"Copernica sandbox on {base}")
    print(f"  REST v3:  {base}/v3/identity?access_token={settings.api_token}")
    print(f"  REST v4:  POST {base}/authenticate access_token={settings.api_token} -> JWT")
    print(f"  API token: {settings.api_token}")
    print(f"  more accounts: POST {base}/_sandbox/accounts")
    print(f"  control:  {base}/_sandbox/  (webhook key: {base}/_sandbox/webhook-key)", flush=True)
    # uvloop, as the bridge: an emulator that costs less leaves the machine to what is measured
    web.run_app(create_app(settings), host=args.host, port=args.port, print=None,
                loop=uvloop.new_event_loop())
    return 0
