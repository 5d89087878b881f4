"""Which store a client uses: explicit URL, then the environment, then the nearest config file, then the default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mooncat_checkpoint import CheckpointClient, ConfigError, resolve_url
from mooncat_checkpoint.config import CONFIG_FILE_NAME, DEFAULT_URL, ENV_VAR, parse_url


def _write_config(directory: Path, url: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE_NAME
    path.write_text(json.dumps({"backend": {"url": url}}))
    return path


@pytest.fixture
def project(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory three levels below a project root that holds a config file."""
    _write_config(in_tmp, "sqlite://./data/cp.db")
    deep = in_tmp / "a" / "b" / "c"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    return in_tmp


def test_explicit_url_wins_over_everything(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "memory://")
    cp = CheckpointClient("file://./here")
    assert cp.url_source == "argument"
    assert cp.location.path == str(Path.cwd() / "here")


def test_environment_wins_over_the_config_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "file://rel/store")
    cp = CheckpointClient()
    assert cp.url == "file://rel/store" and cp.url_source == f"env {ENV_VAR}"
    assert cp.location.path == str(Path.cwd() / "rel" / "store")  # relative to the working directory


def test_an_empty_environment_value_counts_as_unset(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    resolved = resolve_url()
    assert resolved.source.startswith("config ")


def test_a_blank_environment_value_is_a_bad_url_as_in_typescript(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TS only skips an empty value; a blank one it takes as the URL and refuses. Falling back to the
    # config file instead would let a Python job use a store that a TS job with the same setting never does.
    monkeypatch.setenv(ENV_VAR, "   ")
    with pytest.raises(ConfigError, match="unsupported store URL"):
        CheckpointClient()


def test_the_nearest_config_file_resolves_relative_paths_against_its_folder(project: Path) -> None:
    cp = CheckpointClient()
    assert cp.url_source == f"config {project / CONFIG_FILE_NAME}"
    assert cp.location.scheme == "sqlite"
    assert cp.location.path == str(project / "data" / "cp.db")
    assert cp.claim("ns", "k").kind == "claimed"
    assert (project / "data" / "cp.db").is_file()


def test_a_nearer_config_file_wins(project: Path) -> None:
    nearer = project / "a" / "b"
    _write_config(nearer, "file://store")
    cp = CheckpointClient()
    assert cp.url_source == f"config {nearer / CONFIG_FILE_NAME}"
    assert cp.location.scheme == "file" and cp.location.path == str(nearer / "store")


def test_an_absolute_path_in_a_config_file_is_kept(project: Path, tmp_path: Path) -> None:
    _write_config(project / "a", f"file://{tmp_path / 'elsewhere'}")
    assert CheckpointClient().location.path == str(tmp_path / "elsewhere")


def test_a_config_file_without_a_url_marks_the_root_and_falls_back_to_the_default(project: Path) -> None:
    nearer = project / "a"
    (nearer / CONFIG_FILE_NAME).write_text(json.dumps({"other": 1}))
    resolved = resolve_url()
    assert resolved.url == DEFAULT_URL and resolved.source == "default"


def test_an_unreadable_config_file_is_an_error_not_a_silent_default(project: Path) -> None:
    (project / "a" / CONFIG_FILE_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match=CONFIG_FILE_NAME):
        CheckpointClient()
    _write_config(project / "a", 42)
    with pytest.raises(ConfigError, match=r"backend\.url"):
        CheckpointClient()


def test_a_folder_named_like_the_config_file_is_an_error_not_skipped(project: Path) -> None:
    """TypeScript fails to read it, swallows that and uses the config further up, as for any unreadable
    config (tests/interop shows it); here it is refused like every unreadable config."""
    folder = project / "a" / CONFIG_FILE_NAME
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        CheckpointClient()
    with pytest.raises(ConfigError, match=str(folder)):
        resolve_url()
    assert not (project / "data").exists()  # the config further up was not used either
    assert resolve_url("memory://").url == "memory://"  # an explicit URL needs no config


def test_a_config_name_that_is_not_a_regular_file_is_an_error(project: Path) -> None:
    os.mkfifo(project / "a" / CONFIG_FILE_NAME)  # reading a FIFO would hang, not fail
    with pytest.raises(ConfigError, match="not a regular file"):
        CheckpointClient()


def test_the_default_is_a_file_store_under_the_working_directory(in_tmp: Path) -> None:
    cp = CheckpointClient()
    assert cp.url == DEFAULT_URL == "file://./.mooncat/checkpoints" and cp.url_source == "default"
    assert cp.location.path == str(in_tmp / ".mooncat" / "checkpoints")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file://./x", "x"),
        ("file://x", "x"),
        ("file://x/../y", "y"),
        ("sqlite://./db.sqlite", "db.sqlite"),
    ],
)
def test_relative_urls(in_tmp: Path, url: str, path: str) -> None:
    assert parse_url(url).path == str(in_tmp / path)


def test_absolute_urls(tmp_path: Path) -> None:
    assert parse_url(f"file://{tmp_path}/x").path == str(tmp_path / "x")
    assert parse_url("memory://").scheme == "memory"


@pytest.mark.parametrize(
    "url",
    [
        "file://localhost/x",
        "file://LOCALHOST/x",
        "file://~/x",
        "sqlite://~/cp.db",
        "file://x?y=1",
        "sqlite://cp.db?mode=ro",
        "file://x#frag",
        "sqlite://",
        "file://",
        "memory://x",
        "s3://bucket/x",
        "http://host/x",
        "/plain/path",
        "file:/x",
        "",
    ],
)
def test_urls_typescript_would_misread_are_refused(in_tmp: Path, url: str) -> None:
    with pytest.raises(ConfigError):
        CheckpointClient(url)
    assert os.listdir(in_tmp) == []


def test_shareable_url_names_the_config_store_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "mooncat-checkpoint.config.json").write_text('{"backend": {"url": "file://./store"}}')
    monkeypatch.delenv("MOONCAT_CHECKPOINT_URL", raising=False)
    monkeypatch.chdir(tmp_path / "sub")
    client = CheckpointClient()
    assert client.url == "file://./store"
    assert client.shareable_url == f"file://{tmp_path.resolve() / 'store'}"
    claimed = client.claim("ns", "k")
    client.done("ns", "k", claimed.lease_token, result=1)
    monkeypatch.chdir(tmp_path.parent)
    assert CheckpointClient(client.shareable_url).get("ns", "k").result == 1


def test_a_file_store_whose_folder_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for url in (f"file://{plain}", f"file://{plain}/below"):
        with pytest.raises(ConfigError, match=r"cannot use .*plain\.txt.* as a file store"):
            CheckpointClient(url).claim("ns", "k")
    assert plain.read_text() == "x"


def test_a_file_where_a_namespace_folder_belongs_is_a_clear_error(tmp_path: Path) -> None:
    with CheckpointClient(f"file://{tmp_path / 'store'}") as cp:
        cp.claim("other", "k")
        (tmp_path / "store" / "ns").write_text("x")
        for call in (lambda: cp.claim("ns", "k"), lambda: cp.get("ns", "k"), lambda: cp.list("ns"),
                     lambda: cp.claim_many("ns", ["k"])):
            with pytest.raises(ConfigError, match=r"is a file, .* namespace 'ns'"):
                call()
        assert cp.namespaces() == ["other"]
    assert (tmp_path / "store" / "ns").read_text() == "x"
