"""`aifetch keys`, `aifetch ledger migrate` and `aifetch usage`, run in-process: output,
exit codes and hints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifetch.gateway._cli import main
from aifetch.gateway.governance import Governor
from tests.governance.conftest import MODELS


def _config(tmp_path: Path, **sections: Any) -> str:
    raw = {"upstreams": {"mock": {"kind": "mock"}}, "models": MODELS, **sections}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _keys_config(tmp_path: Path, ledger_url: str) -> str:
    return _config(tmp_path, ledger=ledger_url, keys={"secret": "${TEST_KEY_SECRET}"})


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY_SECRET", "cli-secret")


def test_keys_create_list_revoke(
    ledger_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _keys_config(tmp_path, ledger_url)
    args = ["keys", "create", "--config", config, "--name", "team-a", "--models", "m1,m2"]
    args += ["--rpm", "60", "--tpm", "5000", "--max-streams", "3", "--budget", "12.5"]
    args += ["--per", "month", "--expires", "7d"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("sk-aif-")
    assert "shown only now" in err
    assert key not in err

    assert main(["keys", "list", "--config", config]) == 0
    table = capsys.readouterr().out
    assert "team-a" in table
    assert "m1,m2" in table
    assert "12.5/month" in table
    assert key not in table

    # The key works in a gateway that reads the same store.
    async def identify() -> tuple[str | None, int | None]:
        gov = Governor(_load(config))
        await gov.start()
        try:
            who = gov.identify(key.encode())
            assert who is not None
            assert who.limits is not None
            return who.key_name, who.limits.max_streams
        finally:
            await gov.aclose()

    assert asyncio.run(identify()) == ("team-a", 3)

    assert main(["keys", "revoke", "--config", config, "team-a"]) == 0
    assert "revoked key 'team-a'" in capsys.readouterr().err
    assert main(["keys", "revoke", "--config", config, "team-a"]) == 1
    assert "no active key named 'team-a'" in capsys.readouterr().err
    assert main(["keys", "list", "--config", config, "--all", "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["revoked_at"] is not None
    assert listed["budget"] == {"usd": 12.5, "per": "month"}


def _load(path: str) -> Any:
    from aifetch.gateway import load_config

    return load_config(path)


def test_keys_need_a_ledger_and_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "list", "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no ledger database in the config" in err
    assert "sqlite:///" in err
    assert "Try 'aifetch keys --help'" in err
    no_secret = _config(tmp_path, ledger=f"sqlite:///{tmp_path / 'u.db'}")
    assert main(["keys", "list", "--config", no_secret]) == 2
    assert "keys: {secret:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "bad name"], "name: 1-64 characters"),
        (["--name", "a", "--models", "gpt-9"], "unknown model 'gpt-9'"),
        (["--name", "a", "--rpm", "0"], "rpm: must be at least 1"),
        (["--name", "a", "--expires", "2001-01-01"], "expires: must be in the future"),
    ],
)
def test_keys_create_refuses_bad_options(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    config = _keys_config(tmp_path, sqlite_url)
    assert main(["keys", "create", "--config", config, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_secret_variable_is_a_config_error(
    sqlite_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_KEY_SECRET")
    assert main(["keys", "list", "--config", _keys_config(tmp_path, sqlite_url)]) == 2
    assert "environment variable TEST_KEY_SECRET is not set" in capsys.readouterr().err


def test_ledger_migrate_is_versioned(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, ledger=pg_url)
    # Before migrating, a gateway refuses to start and says what to run.
    assert main(["usage", "--config", config]) == 1
    assert "run `aifetch ledger migrate --config FILE` first" in capsys.readouterr().err
    assert main(["ledger", "migrate", "--config", config]) == 0
    err = capsys.readouterr().err
    assert "ledger schema version 1 (migrated from version 0)" in err
    assert "postgresql://127.0.0.1" in err
    assert main(["ledger", "migrate", "--config", config]) == 0
    assert "(up to date)" in capsys.readouterr().err
    assert main(["usage", "--config", config]) == 0
    assert capsys.readouterr().out.split()[:2] == ["caller", "calls"]


def test_an_unreachable_database_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.services import free_port

    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/test"
    assert main(["usage", "--config", _config(tmp_path, ledger=url)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the ledger database" in err
    assert "hunter2" not in err


def test_usage_refuses_a_bad_since(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--config", _config(tmp_path, ledger=sqlite_url), "--since", "soon"]) == 2
    assert "--since: expected a span" in capsys.readouterr().err


def test_serve_with_memory_state_refuses_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, callers=[{"name": "a", "key": "k", "limits": {"rpm": 10}}])
    assert main(["serve", "--config", config, "--workers", "2", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "state: memory keeps limits in one process" in err
    assert "redis://" in err


def test_an_sqlite_file_that_cannot_be_opened_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'missing-folder' / 'usage.db'}"
    assert main(["usage", "--config", _config(tmp_path, ledger=url)]) == 1
    assert "cannot open the ledger database" in capsys.readouterr().err
