"""The router benchmark measures the operator's router, not a look-alike: same config, same args."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench.router_overhead import __main__ as bench

from llm_operator.router.objects import build_router_deployment, render_config


def test_loopback_config_changes_only_the_engine_address() -> None:
    service = bench.bench_service()
    generated = yaml.safe_load(render_config(service, {}).text)
    loopback = bench.loopback_config(service, "http://127.0.0.1:9999", {})

    [deployment] = loopback["model_list"]
    assert deployment["litellm_params"]["api_base"] == "http://127.0.0.1:9999/v1"
    deployment["litellm_params"]["api_base"] = generated["model_list"][0]["litellm_params"]["api_base"]
    assert loopback == generated


def test_operator_variant_starts_the_proxy_with_the_deployments_args_and_env(tmp_path: Path) -> None:
    service = bench.bench_service()
    deployment = build_router_deployment(service, "uid", render_config(service, {}))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args, env = bench.proxy_command(service, bench.VARIANTS["operator"], tmp_path / "config.yaml", 4321, tmp_path)

    assert args[:6] == ["--config", str(tmp_path / "config.yaml"), "--port", "4321", "--host", "127.0.0.1"]
    tuning = [a for a in container["args"] if a not in ("--config", "/etc/litellm/config.yaml", "--port", "4000")]
    assert args[6:] == tuning and "--run_granian" in tuning
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env.keys() == plain.keys()
    assert env["TMPDIR"] == str(tmp_path)  # /tmp of the container moved under the work dir
    assert "LITELLM_MASTER_KEY" not in env  # a secretKeyRef in the Deployment; the bench sets its own


def test_a_variant_replaces_only_the_tuning(tmp_path: Path) -> None:
    variant = bench.VARIANTS["uvicorn-1w"]
    args, env = bench.proxy_command(bench.bench_service(), variant, tmp_path / "c.yaml", 1, tmp_path)
    assert args[6:] == list(variant.args)
    assert env["LITELLM_LOG"] == "INFO"


def test_repeated_level_reports_the_median_throughput_run(monkeypatch) -> None:
    rates = iter([90.0, 140.0, 120.0])

    def fake_measure(target, url, concurrency, requests, max_seconds, cpu=None):
        rps = next(rates)
        return bench.Level(target, concurrency, 100, 0, 1.0, 1000 / rps, 2000 / rps, 1000 / rps, rps)

    monkeypatch.setattr(bench, "measure", fake_measure)
    level = bench.measure_repeated("operator", "http://x", 64, 100, 1.0, repeat=3)
    assert level.rps == 120.0
    assert level.rps_runs == [90.0, 120.0, 140.0]
    assert "| 120 | 90 120 140 |" in bench.table([level])
