"""Without an explicit URL, both languages find the same store: environment, nearest config file
(relative paths against the file's folder), then the default under the working directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from interop_node import ts_run
from mooncat_checkpoint import CheckpointClient, ConfigError
from mooncat_checkpoint.config import ENV_VAR

pytestmark = pytest.mark.interop

CONFIG = "mooncat-checkpoint.config.json"


@dataclass(frozen=True)
class Case:
    name: str
    configs: dict[str, dict[str, object]]  # folder (relative to the project) -> config file content
    env: str | None
    expected_store: str  # relative to the project folder


CASES = [
    Case("config file, relative file store", {".": {"backend": {"url": "file://./store"}}}, None, "store"),
    Case("config file, relative sqlite store", {".": {"backend": {"url": "sqlite://data/cp.db"}}}, None,
         "data/cp.db"),
    Case("empty env counts as unset", {".": {"backend": {"url": "file://store"}}}, "", "store"),
    Case("env wins, relative to the working directory", {".": {"backend": {"url": "file://./store"}}},
         "file://./from-env", "sub/deeper/from-env"),
    Case("nothing configured: the default", {}, None, "sub/deeper/.mooncat/checkpoints"),
    Case("a config without url ends the search", {".": {"backend": {"url": "file://./store"}}, "sub": {}}, None,
         "sub/deeper/.mooncat/checkpoints"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_both_languages_resolve_the_same_store(
    case: Case, node_ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    workdir = project / "sub" / "deeper"
    workdir.mkdir(parents=True)
    for folder, content in case.configs.items():
        (project / folder / CONFIG).write_text(json.dumps(content), "utf-8")
    # TS opens a SQLite file only in a folder that exists; Python would create it.
    (project / case.expected_store).parent.mkdir(parents=True, exist_ok=True)

    ts_run(None, [
        {"op": "claim", "ns": "cfg", "key": case.name},
        {"op": "done", "ns": "cfg", "key": case.name, "leaseToken": {"from": 0}, "result": "ts"},
    ], cwd=workdir, env={ENV_VAR: case.env})
    assert (project / case.expected_store).exists()

    monkeypatch.chdir(workdir)
    if case.env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, case.env)
    with CheckpointClient() as py:
        claim = py.claim("cfg", case.name)
    assert claim.kind == "done" and claim.checkpoint.result == "ts"


def test_a_blank_env_value_is_an_error_in_both(
    node_ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an empty value counts as unset. TS takes a blank one as the URL and refuses it; so must we,
    rather than quietly use the config file's store, which a TS job with the same setting never would."""
    (tmp_path / CONFIG).write_text(json.dumps({"backend": {"url": "file://./store"}}), "utf-8")
    [refused] = ts_run(None, [{"op": "get", "ns": "cfg", "key": "k", "raises": True}], cwd=tmp_path,
                       env={ENV_VAR: "  "})
    assert "unsupported checkpoint backend url" in refused.message

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "  ")
    with pytest.raises(ConfigError):
        CheckpointClient()
    assert not (tmp_path / "store").exists()


def test_a_folder_named_like_the_config_file(node_ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TypeScript 0.5.1 cannot read it, swallows the error and uses the config file further up, as it does
    for any unreadable config. Python refuses every unreadable config rather than guess, this one too."""
    (tmp_path / CONFIG).write_text(json.dumps({"backend": {"url": "file://./store"}}), "utf-8")
    workdir = tmp_path / "sub"
    (workdir / CONFIG).mkdir(parents=True)
    ts_run(None, [
        {"op": "claim", "ns": "cfg", "key": "k"},
        {"op": "done", "ns": "cfg", "key": "k", "leaseToken": {"from": 0}, "result": "ts"},
    ], cwd=workdir, env={ENV_VAR: None})
    assert (tmp_path / "store" / "cfg").is_dir() and not (workdir / ".mooncat").exists()

    monkeypatch.chdir(workdir)
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        CheckpointClient()
