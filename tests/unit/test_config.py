import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from bridge.config import Settings
from bridge.errors import ConfigError


def test_defaults_need_nothing():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.port == 8080
    assert settings.secret_keys == ()
    assert settings.log_format == "text"


def test_every_variable_is_read():
    key1, key2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/bridge",
            "BRIDGE_DATA_DIR": "/var/lib/bridge",
            "BRIDGE_SECRET_KEYS": f"{key1}, {key2}",
            "PUBLIC_URL": "https://bridge.example.com/",
            "PORT": "9000",
            "SMTP_URL": "smtp://mailer:secret@mail.example.com:587",
            "MAIL_FROM": "bridge@example.com",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "JSON",
            "BRIDGE_DB_POOL_SIZE": "24",
            "BRIDGE_TENANT_WORKERS": "1",
            "BRIDGE_RUN_WORKERS": "3",
        }
    )
    assert (settings.db_pool_size, settings.tenant_workers, settings.run_workers) == (24, 1, 3)
    assert settings.secret_keys == (key1, key2)
    assert settings.public_url == "https://bridge.example.com"
    assert settings.port == 9000
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert str(settings.data_dir) == "/var/lib/bridge"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("BRIDGE_SECRET_KEYS", "not-a-key"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("PUBLIC_URL", "bridge.example.com"),
        ("SMTP_URL", "mail.example.com"),
        ("MAIL_FROM", "nobody"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
        ("FRAME_ANCESTORS", "evil.example; script-src *"),
        ("COPERNICA_SANDBOX_URL", "localhost:8802"),
        ("BRIDGE_DB_POOL_SIZE", "3"),  # too few for a process's own tasks
        ("BRIDGE_TENANT_WORKERS", "0"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_a_bad_key_is_not_echoed():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BRIDGE_SECRET_KEYS": "s3cr3t-value-that-is-wrong"})
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"PORT": "abc"}, "PORT"), ({"BRIDGE_SECRET_KEYS": "bad"}, "BRIDGE_SECRET_KEYS")],
)
def test_cli_stops_with_one_clear_line(env, expected):
    result = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "migrate"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bridge: error: ") and expected in lines[0]
