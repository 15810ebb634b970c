"""A plain `servesim run` loads only what it uses (docs/performance.md, "Cheap start"): these pin
the lazy imports, so that an eager import added somewhere cannot silently bring the start-up back."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.predictors import PREDICTORS
from servesim.routers import ROUTERS
from servesim.schedulers import POLICIES

ROOT = Path(__file__).resolve().parents[1]
ARXIV = ROOT / "traces/arxiv-summarization/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"

NOT_IMPORTED = [
    "pandas", "matplotlib", "tqdm", "ray",
    "numpy.ma",  # np.percentile and np.unique import it on first use: metrics/percentiles.py
    "gzip",  # compressed traces only
    "servesim.studies", "servesim.elastic", "servesim.engine.elastic", "servesim.enginerun",
    "servesim.calibration", "servesim.testing",
    # features the config leaves out: disaggregation, agentic programs, sessions, trace replay
    "servesim.engine.disaggregation", "servesim.engine.programs", "servesim.metrics.lifecycle",
    "servesim.workload.programs", "servesim.workload.sessions", "servesim.workload.replay",
    # the other command groups: only `run` and `validate` are parsed for a run
    "servesim.cli.trace", "servesim.cli.costmodel", "servesim.cli.throughput", "servesim.cli.studies",
    "servesim.cli.replay", "servesim.cli.plot",
    # components the config does not name
    "servesim.routers.least_loaded", "servesim.routers.conductor", "servesim.routers.power_of_two",
    "servesim.routers.prefix_affinity", "servesim.routers.random", "servesim.schedulers.edf",
    "servesim.schedulers.srtf", "servesim.schedulers.priority", "servesim.predictors.bucket",
    "servesim.predictors.mean",
]
UNBUILT = [  # config sections the run leaves out: no pydantic validator is built for them
    "servesim.config.elastic:AutoscalingConfig", "servesim.config.elastic:FaultsConfig",
    "servesim.config.cluster:DisaggregationConfig", "servesim.config.cluster:PoolConfig",
    "servesim.config.kv:TierConfig", "servesim.config.power:PowerBudgetConfig",
    "servesim.config.workload:SessionsConfig", "servesim.config.workload:ProgramsConfig",
    "servesim.config.workload:TraceConfig", "servesim.config.workload:ClassConfig",
    "servesim.predictors.oracle:NoisyOracleParams",  # predictors other than the run's own
]
PROBE = """
import importlib, json, sys
from servesim.cli import main
code = main(sys.argv[1:])
unbuilt = {}
for path in UNBUILT:
    module, _, name = path.partition(":")
    unbuilt[path] = not getattr(importlib.import_module(module), name).__pydantic_complete__
print(json.dumps({"code": code, "loaded": [m for m in NOT_IMPORTED if m in sys.modules], "unbuilt": unbuilt}))
"""


def test_a_plain_run_imports_only_what_it_uses(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: llama2-7b\nhardware: h100-sxm\nengine: {scheduler: chunked_prefill}\n"
        f"workload:\n  num_requests: 10\n  lengths: {{empirical: {ARXIV}}}\n"
    )
    code = f"NOT_IMPORTED = {NOT_IMPORTED!r}\nUNBUILT = {UNBUILT!r}\n" + PROBE
    argv = ["run", str(config), "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["loaded"] == [], f"a plain run imported {report['loaded']}"
    assert all(report["unbuilt"].values()), f"built for a run that leaves them out: {report['unbuilt']}"


@pytest.mark.parametrize("registry", [ROUTERS, POLICIES, PREDICTORS], ids=lambda r: r.kind)
def test_lazy_built_ins_are_what_their_modules_register(registry):
    """Each name declared with `Registry.lazy` is registered by the module it points to."""
    for name, module in sorted(registry._lazy.items()):
        importlib.import_module(module)
        cls = registry.get(name)
        assert cls.__module__ == module and cls.registry_name == name


def test_the_config_json_schema_still_describes_nested_sections():
    """Nested sections validate with their own validators; the JSON schema still includes them."""
    from servesim.config import SimConfig

    schema = SimConfig.model_json_schema()
    cluster = schema["properties"]["cluster"]
    assert {"instances", "router", "autoscaling"} <= set(cluster["properties"])
    assert cluster["additionalProperties"] is False


def test_every_nested_section_is_validated_by_its_own():
    """A section inside another is `Nested[...]` with a default factory: a plain field of a section
    type (or a default instance) would build its schema into the parent's, or at import."""
    import typing

    import servesim.config  # noqa: F401  (defines every section)
    from servesim.config.base import Section, _OwnValidator

    def sections(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from sections(sub)

    def mentions_section(tp) -> bool:
        return (isinstance(tp, type) and issubclass(tp, Section)) or any(
            mentions_section(a) for a in typing.get_args(tp))

    def marked(tp) -> bool:  # the section itself is Annotated with the marker, wherever it sits
        if typing.get_origin(tp) is typing.Annotated:
            return any(isinstance(m, _OwnValidator) for m in tp.__metadata__)
        if isinstance(tp, type) and issubclass(tp, Section):
            return False
        return all(marked(a) for a in typing.get_args(tp) if mentions_section(a))

    plain = []
    for cls in set(sections(Section)):
        for name, field in cls.model_fields.items():
            nested = any(isinstance(m, _OwnValidator) for m in field.metadata) or marked(field.annotation)
            if mentions_section(field.annotation) and not nested:
                plain.append(f"{cls.__name__}.{name}")
            if isinstance(field.default, Section):
                plain.append(f"{cls.__name__}.{name} (default instance)")
    assert not plain, plain
