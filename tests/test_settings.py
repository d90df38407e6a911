"""Settings: one place, environment overrides, clear errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agentx.sandbox
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


def _world_with_shares(tmp_path: Path) -> Path:
    path = tmp_path / "big.json"
    world = {"name": "big", "n_users": 400, "n_items": 100, "n_creators": 10}
    path.write_text(json.dumps({**world, "rollout_shares": [0.02, 0.1, 0.2]}))
    return path


def test_a_world_that_declares_rollout_shares_gets_them_unless_stages_are_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    world = _world_with_shares(tmp_path)
    declared = load_settings(world=str(world)).stages
    assert [s.treatment_share for s in declared] == [0.02, 0.1, 0.2]
    assert [(s.name, s.days) for s in declared] == [
        (s.name, s.days) for s in load_settings(world="tiny").stages
    ]
    assert [s.treatment_share for s in load_settings(world="tiny").stages] == [0.05, 0.2, 0.5]
    default = json.loads((Path(agentx.sandbox.__file__).parent / "worlds/default.json").read_text())
    shipped = [s.treatment_share for s in load_settings(world="default").stages]
    assert shipped == default["rollout_shares"]
    one_stage = [{"name": "full", "treatment_share": 0.3, "days": 5}]
    assert load_settings(world=str(world), stages=one_stage).stages[0].treatment_share == 0.3
    monkeypatch.setenv("AGENTX_STAGES", json.dumps(one_stage))
    assert [s.treatment_share for s in load_settings(world=str(world)).stages] == [0.3]


def test_a_run_that_picks_another_world_gets_that_worlds_shares(tmp_path: Path) -> None:
    from agentx.graph.context import RunContext, effective_settings

    base = load_settings(world=str(_world_with_shares(tmp_path)), workspace=tmp_path / "ws")
    tiny = effective_settings(base, RunContext(world="tiny"))
    assert [s.treatment_share for s in tiny.stages] == [0.05, 0.2, 0.5]
    one_stage = [{"name": "full", "treatment_share": 0.3, "days": 5}]
    chosen = load_settings(world=base.world, workspace=tmp_path / "ws", stages=one_stage)
    kept = effective_settings(chosen, RunContext(world="tiny"))
    assert [s.treatment_share for s in kept.stages] == [0.3]  # the user's choice stays
