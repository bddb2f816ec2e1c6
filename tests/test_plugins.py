"""Plugin discovery and one test per hook (a hook without a test_hook_<name> here fails the suite)."""
from __future__ import annotations

import importlib.metadata
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import click
import pytest

from fp_registry import hookimpl, plugins
from fp_registry.exitcodes import ExitCode
from fp_registry.records import UploadEvent, Verdict

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plugins.reset_for_tests()
    yield
    monkeypatch.undo()
    plugins.reset_for_tests()


def _fake_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint(name=name, value=name, group="fp_registry")
    monkeypatch.setattr(plugins.importlib.metadata, "entry_points", lambda group: [ep] if group == "fp_registry"
                        else [])
    sys.modules.pop(name, None)


GOOD = """
from fp_registry import hookimpl
from fp_registry.algorithms.ipguard import IPGuard

class Renamed(IPGuard):
    name = "fakeguard"

@hookimpl
def register_methods(register):
    register(Renamed, aliases=("fg",))
"""


def test_entry_point_plugin_is_discovered(fresh_plugins: None, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, GOOD, "fp_fake_good")
    table = plugins.methods()
    assert table["fakeguard"].name == "fakeguard" and table["fg"] is table["fakeguard"]
    row = next(r for r in plugins.plugin_table() if r["name"] == "fp_fake_good")
    assert row["hooks"] == ["register_methods"]


def test_broken_plugin_is_a_warning(fresh_plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, "raise ImportError('needs libfoo')", "fp_fake_broken")
    with pytest.warns(UserWarning, match="fp_fake_broken.*needs libfoo"):
        plugins.load_plugins()
    assert "ipguard" in plugins.methods()  # built-ins still work


def test_load_plugins_env_restricts(fresh_plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: Any) -> None:
    _fake_entry_points(tmp_path, monkeypatch, GOOD, "fp_fake_good2")
    monkeypatch.setenv("FP_REGISTRY_LOAD_PLUGINS", "something-else")
    plugins.load_plugins()
    assert "fakeguard" not in plugins.methods()
    assert "something-else" in capsys.readouterr().err


def test_autoload_can_be_disabled(fresh_plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, GOOD, "fp_fake_good3")
    monkeypatch.setenv("FP_REGISTRY_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fakeguard" not in plugins.methods() and "ipguard" in plugins.methods()


def test_hook_register_methods(plugin: Any) -> None:
    from fp_registry.algorithms.ipguard import IPGuard

    class Other(IPGuard):
        name = "other-guard"

    class P:
        @hookimpl
        def register_methods(self, register: Any) -> None:
            register(Other)

    plugin(P(), "methods")
    assert plugins.methods()["other-guard"] is Other


def test_hook_register_backends(plugin: Any) -> None:
    from fp_registry.backends import LocalBackend, get_backend

    class P:
        @hookimpl
        def register_backends(self, register: Any) -> None:
            register("memo", LocalBackend)

    plugin(P(), "backends")
    assert isinstance(get_backend("memo://x"), LocalBackend)
    from fp_registry.errors import UnknownBackendError

    with pytest.raises(UnknownBackendError) as err:
        get_backend("nope://x")
    assert "known schemes: " in err.value.one_line() and "memo" in err.value.one_line()


def test_hook_load_model(plugin: Any) -> None:
    from fp_registry.loading import load_model

    sentinel = lambda x: x  # noqa: E731

    class P:
        @hookimpl
        def load_model(self, uri: str, config: dict[str, Any]) -> Any:
            return sentinel if uri.startswith("toy://") else None

    plugin(P(), "loader")
    assert load_model("toy://m") is sentinel


def test_hook_register_commands(plugin: Any, capsys: Any) -> None:
    from fp_registry.cli import run

    @click.command(name="hello-plugin")
    def hello() -> None:
        click.echo("hi from a plugin")

    class P:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            cli.add_command(hello)

    plugin(P(), "commands")
    assert run(["hello-plugin"]) == 0 and "hi from a plugin" in capsys.readouterr().out


def test_an_unexpected_exception_is_exit_2_with_one_line_never_1(plugin: Any, capsys: Any, monkeypatch: Any) -> None:
    """Exit 1 means "match" to scripts; a crash must not look like one."""
    from fp_registry.cli import run

    @click.command(name="crash-plugin")
    def crash() -> None:
        raise KeyError("boom\nsecond line")

    class P:
        @hookimpl
        def register_commands(self, cli: click.Group) -> None:
            cli.add_command(crash)

    plugin(P(), "crash")
    monkeypatch.delenv("FP_REGISTRY_DEBUG", raising=False)
    assert run(["crash-plugin"]) == ExitCode.ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: unexpected KeyError: 'boom") and "\n" not in err and "FP_REGISTRY_DEBUG=1" in err
    monkeypatch.setenv("FP_REGISTRY_DEBUG", "1")
    with pytest.raises(KeyError):
        run(["crash-plugin"])


def test_hook_register_attacks(plugin: Any) -> None:
    def halve(model: Any, ctx: Any, **settings: Any) -> Any:
        return model

    class P:
        @hookimpl
        def register_attacks(self, register: Any) -> None:
            register("halve", halve, family="toy")

    plugin(P(), "attacks")
    spec = plugins.attacks()["halve"]
    assert spec.fn is halve and spec.family == "toy" and spec.derived


def test_hook_should_check(plugin: Any, tmp_path: Path) -> None:
    from fp_registry.pipeline import handle_upload

    class P:
        @hookimpl
        def should_check(self, event: UploadEvent, config: dict[str, Any]) -> bool | None:
            return False if event.name.startswith("private/") else None

    plugin(P(), "should")
    event = UploadEvent("scan", "private/x", "1", "nowhere")
    [v] = handle_upload(event, f"file://{tmp_path}")
    assert v.label == "skipped" and "should_check" in v.evidence["reason"]


def test_hook_verdict_ready(plugin: Any, tmp_path: Path, ipguard_fp: Any, digits_owner: Any) -> None:
    from fp_registry.backends import LocalBackend
    from fp_registry.pipeline import check_suspect

    seen: list[Verdict] = []

    class P:
        @hookimpl
        def verdict_ready(self, verdict: Verdict, entry: Any, event: Any, config: dict[str, Any]) -> None:
            seen.append(verdict)

    plugin(P(), "verdicts")
    LocalBackend(str(tmp_path)).put(ipguard_fp, "owner-uri")
    check_suspect(digits_owner, f"file://{tmp_path}")
    assert [v.label for v in seen] == ["match"] and seen[0].entry_id == "owner-uri-ipguard"


def test_every_hook_has_a_test_and_readme_entry() -> None:
    hooks = {name for name in dir(plugins.pm.hook) if not name.startswith("_")}
    here = Path(__file__).read_text()
    readme = README.read_text()
    for name in sorted(hooks):
        assert f"def test_hook_{name}(" in here, f"hook {name} has no test_hook_{name}"
        assert re.search(rf"`{name}\(", readme), f"hook {name} is not documented in README's Plugin hooks section"


def test_all_plugins_validate() -> None:
    plugins.load_plugins()
    plugins.pm.check_pending()
