"""Settings: one place, environment overrides, clear errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentx.settings import SettingsError, load_settings


def test_defaults_are_offline() -> None:
    settings = load_settings()
    assert not settings.llm.enabled
    assert settings.checkpointer == "sqlite"


def test_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTX_SEED", "42")
    monkeypatch.setenv("AGENTX_LLM__MODEL", "my-model")
    settings_file = tmp_path / "agentx.toml"
    settings_file.write_text('world = "fresh"\niterations = 7\n')
    settings = load_settings(settings_file, iterations=3)
    assert settings.seed == 42 and settings.llm.model == "my-model"
    assert settings.world == "fresh" and settings.iterations == 3


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTX_ALPHA", "2")
    with pytest.raises(SettingsError, match="alpha"):
        load_settings()


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    settings_file = tmp_path / "agentx.toml"
    settings_file.write_text("iteratons = 3\n")
    with pytest.raises(SettingsError, match="iteratons"):
        load_settings(settings_file)


def test_relative_workspace_becomes_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Worktrees and confined subprocesses run elsewhere: a relative path would break them.
    monkeypatch.chdir(tmp_path)
    settings = load_settings(workspace=Path(".agentx-run"))
    assert settings.workspace == tmp_path.resolve() / ".agentx-run"


def test_a_stage_longer_than_the_world_simulates_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    from agentx.graph.resources import build_resources
    from agentx.target.contract import TargetError

    settings = load_settings(
        world="tiny",
        workspace=tmp_path / "ws",
        stages=[{"name": "canary", "treatment_share": 0.05, "days": 3},
                {"name": "full", "treatment_share": 0.5, "days": 30}],
    )  # fmt: skip
    with pytest.raises(TargetError, match="full last longer than world 'tiny' simulates"):
        build_resources(settings)
    assert not (tmp_path / "ws" / "sandbox").exists()
