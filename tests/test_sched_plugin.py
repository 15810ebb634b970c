"""The worked plugin example on a hand-built request set, and the protocol check."""

from pathlib import Path

from examples.custom_scheduler import ShortestPromptFirst  # the repository root is on sys.path
from servesim.schedulers import SCHEDULERS
from tests.sched_helpers import drain, make, req, step


def test_starts_the_shortest_prompts_first():
    s = make(ShortestPromptFirst, budget=20)
    reqs = [req(0, 15, 3), req(1, 5, 3), req(2, 9, 3)]
    for r in reqs:
        s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {reqs[1]: 5, reqs[2]: 9}  # 15 more would exceed the budget
    assert step(s, 0.01).tokens == {reqs[0]: 15}
    drain(s, 0.02)
    assert all(r.num_generated_tokens == 3 for r in reqs)


def test_respects_max_prompts_per_step():
    s = make(ShortestPromptFirst, params={"max_prompts_per_step": 1})
    for i in range(3):
        s.add_request(req(i, 5 + i, 2), 0.0)
    assert [r.request_id for r in step(s, 0.0).tokens] == [0]


def test_registry_loads_the_plugin_by_path(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert SCHEDULERS.get("examples.custom_scheduler:ShortestPromptFirst") is ShortestPromptFirst
