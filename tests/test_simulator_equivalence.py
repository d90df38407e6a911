"""The old-against-new simulator check (benchmarks/simulator_equivalence.py) that vouches
for every speed-up of the simulator: identical days pass, any change is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

import agentx.sandbox.simulator as simulator
from agentx.sandbox.online import SandboxWorld
from agentx.sandbox.world import WorldParams

SOURCE = Path(simulator.__file__)


@pytest.fixture(scope="module")
def tiny_sandbox_world(tiny_world: WorldParams) -> SandboxWorld:
    return SandboxWorld(tiny_world)


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    source = SOURCE.read_text()
    assert source.count(old) == 1, old
    path = tmp_path / "variant_simulator.py"
    path.write_text(source.replace(old, new))
    return path


def test_the_same_simulator_plays_identical_days(tiny_sandbox_world: SandboxWorld) -> None:
    bench = load_benchmark("simulator_equivalence")
    result = bench.compare(tiny_sandbox_world, bench.load_reference(str(SOURCE)), days=3)
    assert result.difference is None
    assert result.days == 3 and result.impressions > 0
    assert result.cpu_seconds["reference"] > 0 and result.cpu_seconds["current"] > 0


def test_a_changed_choice_is_caught_in_the_outcomes(
    tmp_path: Path, tiny_sandbox_world: SandboxWorld
) -> None:
    bench = load_benchmark("simulator_equivalence")
    changed = _variant(
        tmp_path,
        "- world.watched_penalty * watched",
        "- 0.9 * world.watched_penalty * watched",
    )
    result = bench.compare(tiny_sandbox_world, bench.load_reference(str(changed)), days=4)
    assert result.difference is not None
    assert result.difference.split(": ")[1] in {"clicks", "watch"}


def test_a_changed_state_update_is_caught_the_day_it_happens(
    tmp_path: Path, tiny_sandbox_world: SandboxWorld
) -> None:
    """Interest drift moves only the users' state: the outcomes of that day still agree,
    the state does not."""
    bench = load_benchmark("simulator_equivalence")
    changed = _variant(
        tmp_path, "drift = world.interest_drift", "drift = 0.5 * world.interest_drift"
    )
    result = bench.compare(tiny_sandbox_world, bench.load_reference(str(changed)), days=4)
    first_day = tiny_sandbox_world.online_start_day
    assert result.difference == f"day {first_day}: interest"
    assert result.days == 1


def test_the_command_exits_1_and_names_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_benchmark("simulator_equivalence")
    changed = _variant(
        tmp_path, "drift = world.interest_drift", "drift = 0.5 * world.interest_drift"
    )
    monkeypatch.setattr(
        "sys.argv",
        ["simulator_equivalence.py", "--against", str(changed), "--world", "tiny", "--days", "2"],
    )
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 1
    assert ": interest (against" in capsys.readouterr().out
    monkeypatch.setattr(
        "sys.argv",
        ["simulator_equivalence.py", "--against", str(SOURCE), "--world", "tiny", "--days", "2"],
    )
    bench.main()
    assert "identical: 2 days of tiny" in capsys.readouterr().out
