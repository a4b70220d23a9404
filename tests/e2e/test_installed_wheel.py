"""The wheel is the product: installed on its own, with no checkout on the path, it migrates a
database and serves its pages; ``import bridge`` never loads the emulators."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.fixtures.bridge import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed; its dependencies are borrowed from
    this environment's site-packages as a plain path entry, which runs none of its ``.pth``
    files, so the editable install of the checkout is not visible there."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(site, "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         str(wheel)],
        check=True, capture_output=True,
    )
    return venv


def test_the_wheel_carries_sql_templates_and_static_but_no_emulators(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("bridge/resources/sql/migrations/0001_init.sql",
                 "bridge/resources/sql/queries/jobs.sql",
                 "bridge/resources/templates/base.html",
                 "bridge/resources/static/app.css"):
        assert name in names
    assert not [n for n in names if n.startswith("sandbox/") or "/sandbox/" in n]


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", **extra}


async def test_installed_bridge_migrates_and_serves_its_login_page(
    installed: Path, new_database, tmp_path: Path
) -> None:
    url = await new_database(migrated=False)
    python, bridge = str(installed / "bin" / "python"), str(installed / "bin" / "bridge")
    code, where, _ = await _run(tmp_path, {}, python, "-c", "import bridge; print(bridge.__file__)")
    assert code == 0 and where.startswith(str(installed))  # the installed copy, not the checkout

    code, out, err = await _run(tmp_path, _environment(url), bridge, "migrate")
    assert code == 0, err
    assert out.startswith("applied: 0001_init")

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        bridge, "serve", "--role", "web", "--host", "127.0.0.1", "--port", str(port),
        cwd=tmp_path, env=_environment(url, BRIDGE_SECRET_KEYS=Fernet.generate_key().decode()),
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            page = await _first_answer(http, "/login", server)
            stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1)
            assert re.fullmatch(r"/static/app\.css\?v=[\w%-]+", stylesheet)  # versioned
            async with http.get(stylesheet) as reply:
                assert reply.status == 200 and reply.content_type == "text/css"
                assert "body" in await reply.text()
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 20)


async def _run(cwd: Path, env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env or None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def _first_answer(
    http: aiohttp.ClientSession, path: str, server: asyncio.subprocess.Process
) -> str:
    """The page at ``path`` once the server listens (it has to start up first)."""
    while True:
        assert server.returncode is None, "bridge serve exited"
        try:
            async with http.get(path) as reply:
                assert reply.status == 200
                return await reply.text()
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)


def test_importing_the_bridge_loads_no_emulator() -> None:
    code = (
        "import pkgutil, importlib, sys, bridge\n"
        "for m in pkgutil.walk_packages(bridge.__path__, 'bridge.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n == 'sandbox' or n.startswith('sandbox.')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert loaded.strip() == "[]"
