from adapterhub.compose.workflows.demo import run_demo


def test_demo_trains_round_trips_and_merges():
    lines: list[str] = []
    result = run_demo(lines.append, steps=10)
    assert result["loss_last"] < result["loss_first"]
    assert result["reload_diff"] < 1e-6
    assert result["merge_diff"] < 1e-4
    assert any("saved to demo/" in line for line in lines)
