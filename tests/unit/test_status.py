"""compute_status: phase, kstatus conditions and the scale-subresource fields from what was observed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llm_operator.api.models import LLMServiceStatus
from llm_operator.fit import FitResult
from llm_operator.status import Observed, compute_status

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:05:00Z"
SELECTOR = "app.kubernetes.io/instance=llm,app.kubernetes.io/component=engine"
ENDPOINT = "http://llm.ml.svc:8000/v1"
SCHEDULER_MESSAGE = (
    "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint "
    "{node-role.kubernetes.io/control-plane: }. preemption: 0/4 nodes are available: 2 No preemption victims "
    "found for incoming pod, 2 Preemption is not helpful for scheduling."
)
FITS = FitResult("True", "Fits", "weights 14.9 GiB + KV cache 6.7 GiB fit 1 x 24.0 GiB x 0.9")
DOES_NOT_FIT = FitResult(
    "False", "InsufficientGPUMemory",
    "weights 130.4 GiB need more than 64.5 GiB usable of 1 x 79.6 GiB x 0.9; would fit with resources.gpus: 4",
)


def pod(name: str, *, ready: bool = True, scheduled: bool = True, waiting: str | None = None,
        init_waiting: str | None = None, deleting: bool = False) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "True"})
    else:
        conditions.append({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": SCHEDULER_MESSAGE, "lastTransitionTime": T0,
        })
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    status: dict[str, Any] = {"phase": "Running" if scheduled else "Pending", "conditions": conditions}
    if waiting:
        status["containerStatuses"] = [{
            "name": "engine", "ready": False, "restartCount": 5,
            "state": {"waiting": {"reason": waiting, "message": "back-off 5m0s restarting failed container"}},
        }]
    if init_waiting:
        status["initContainerStatuses"] = [{
            "name": "pull-model", "ready": False,
            "state": {"waiting": {"reason": init_waiting, "message": "pull access denied"}},
        }]
    metadata: dict[str, Any] = {"name": name, "namespace": "ml"}
    if deleting:
        metadata["deletionTimestamp"] = T0
    return {"metadata": metadata, "status": status}


def deployment(replicas: int, updated: int, ready: int, *, generation: int = 2, observed: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "llm", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                   "readyReplicas": ready, "availableReplicas": ready},
    }


def observed(**kwargs: Any) -> Observed:
    defaults: dict[str, Any] = {
        "generation": 3, "desired_replicas": 2, "selector": SELECTOR, "endpoint": ENDPOINT, "fit": FITS, "now": T1,
    }
    return Observed(**{**defaults, **kwargs})


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def ready_observed(**kwargs: Any) -> Observed:
    return observed(deployment=deployment(2, 2, 2), pods=[pod("a"), pod("b")], **kwargs)


# --- Ready -------------------------------------------------------------------------------------


def test_ready_when_all_pods_ready_and_rolled_out() -> None:
    status = compute_status(ready_observed())
    assert status["phase"] == "Ready"
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("True", "Available")
    assert cond["Ready"]["message"] == "2/2 replicas ready"
    assert cond["Reconciling"]["status"] == "False"
    assert cond["Stalled"]["status"] == "False"
    assert cond["ModelFits"] == {**cond["ModelFits"], "status": "True", "reason": "Fits", "message": FITS.message}


def test_scale_and_printer_fields() -> None:
    status = compute_status(ready_observed())
    assert status["observedGeneration"] == 3
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert "desiredReplicas" not in status  # the autoscaler's alone
    assert status["ready"] == "2/2"
    assert status["selector"] == SELECTOR
    assert status["endpoint"] == ENDPOINT


def test_status_validates_against_the_api_model() -> None:
    for obs in (ready_observed(), observed(problems=["spec.x: bad"], deployed=False),
                observed(pods=[pod("a", ready=False, scheduled=False)], deployment=deployment(2, 1, 0))):
        LLMServiceStatus.model_validate(compute_status(obs))


def test_all_ready_but_rollout_unfinished_is_not_ready() -> None:
    # new ReplicaSet being rolled out: old Pods ready, the Deployment has not observed or finished
    for dep in (deployment(2, 1, 2), deployment(2, 2, 2, generation=3, observed=2)):
        status = compute_status(observed(deployment=dep, pods=[pod("a"), pod("b")]))
        assert status["phase"] != "Ready"
        assert conditions(status)["Ready"]["status"] == "False"


def test_scaled_to_zero_is_ready() -> None:
    status = compute_status(observed(desired_replicas=0, deployment=deployment(0, 0, 0), pods=[]))
    assert status["phase"] == "Ready"
    assert conditions(status)["Ready"]["reason"] == "ScaledToZero"
    assert status["ready"] == "0/0"


def test_router_not_ready_keeps_ready_false() -> None:
    status = compute_status(ready_observed(router=("False", "Progressing", "router is starting")))
    assert status["phase"] == "Ready"
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["reason"] == "RouterNotReady"
    assert cond["RouterReady"]["status"] == "False"


def test_router_ready() -> None:
    cond = conditions(compute_status(ready_observed(router=("True", "Available", "1/1 router replicas ready"))))
    assert cond["Ready"]["status"] == "True"
    assert cond["RouterReady"]["reason"] == "Available"


def test_no_router_condition_without_router() -> None:
    assert "RouterReady" not in conditions(compute_status(ready_observed()))


# --- Pending / Progressing -------------------------------------------------------------------------


def test_pending_quotes_the_scheduler_when_a_pod_is_unschedulable() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 0),
                                     pods=[pod("a", ready=False, scheduled=False), pod("b", ready=False,
                                                                                         scheduled=False)]))
    assert status["phase"] == "Pending"
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["reason"] == "Unschedulable"
    assert SCHEDULER_MESSAGE in cond["Ready"]["message"]
    assert "2 Insufficient nvidia.com/gpu" in cond["Ready"]["message"]
    assert cond["Reconciling"]["status"] == "True"
    assert SCHEDULER_MESSAGE in cond["Reconciling"]["message"]
    assert cond["Stalled"]["status"] == "False"
    assert status["readyReplicas"] == 0


def test_degraded_when_one_replica_serves_and_another_cannot_be_scheduled() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 1),
                                     pods=[pod("a"), pod("b", ready=False, scheduled=False)]))
    assert status["phase"] == "Degraded"
    assert SCHEDULER_MESSAGE in conditions(status)["Ready"]["message"]


def test_terminating_unschedulable_pod_is_ignored() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 0),
                                     pods=[pod("a", ready=False), pod("old", ready=False, scheduled=False,
                                                                     deleting=True)]))
    assert status["phase"] == "Progressing"
    assert status["replicas"] == 1


def test_progressing_while_the_model_loads() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 0), pods=[pod("a", ready=False),
                                                                          pod("b", ready=False)]))
    assert status["phase"] == "Progressing"
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Reconciling"]["status"], cond["Stalled"]["status"]) == (
        "False", "True", "False")
    assert cond["Reconciling"]["reason"] == "RollingOut"
    assert status["ready"] == "0/2"


def test_progressing_during_a_rollout_with_one_ready() -> None:
    status = compute_status(observed(deployment=deployment(2, 1, 1), pods=[pod("a"), pod("b", ready=False)]))
    assert status["phase"] == "Progressing"
    assert status["ready"] == "1/2"


def test_pending_before_the_deployment_exists() -> None:
    status = compute_status(observed(deployment=None, pods=[]))
    assert status["phase"] == "Pending"
    assert conditions(status)["Reconciling"]["status"] == "True"


# --- Failed / Degraded ------------------------------------------------------------------------------


def test_invalid_spec_is_failed_and_stalled() -> None:
    problems = ["spec.quantization.method: Ollama serves GGUF models only"]
    status = compute_status(observed(problems=problems, fit=None, deployed=False, deployment=None))
    assert status["phase"] == "Failed"
    cond = conditions(status)
    assert (cond["Stalled"]["status"], cond["Stalled"]["reason"]) == ("True", "InvalidSpec")
    assert problems[0] in cond["Stalled"]["message"]
    assert cond["Ready"]["status"] == "False"
    assert cond["Reconciling"]["status"] == "False"
    assert "ModelFits" not in cond


def test_model_that_does_not_fit_is_failed_and_stalled() -> None:
    status = compute_status(observed(fit=DOES_NOT_FIT, deployed=False, deployment=None))
    assert status["phase"] == "Failed"
    cond = conditions(status)
    assert (cond["Stalled"]["status"], cond["Stalled"]["reason"]) == ("True", "ModelDoesNotFit")
    assert "130.4 GiB" in cond["Stalled"]["message"]
    assert (cond["ModelFits"]["status"], cond["ModelFits"]["reason"]) == ("False", "InsufficientGPUMemory")
    assert cond["ModelFits"]["message"] == DOES_NOT_FIT.message
    assert cond["Ready"]["status"] == "False"


def test_skip_fit_check_deploys_and_keeps_model_fits_false_as_a_warning() -> None:
    status = compute_status(ready_observed(fit=DOES_NOT_FIT, deployed=True))
    assert status["phase"] == "Ready"
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True"
    assert cond["Stalled"]["status"] == "False"
    assert cond["ModelFits"]["status"] == "False"


def test_unknown_fit_is_reported() -> None:
    fit = FitResult("Unknown", "NotChecked", "fit not checked: set spec.model.parameters to enable it")
    cond = conditions(compute_status(ready_observed(fit=fit)))
    assert (cond["ModelFits"]["status"], cond["ModelFits"]["reason"]) == ("Unknown", "NotChecked")
    assert cond["Ready"]["status"] == "True"


def test_degraded_on_crash_loop_with_some_ready() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 1),
                                     pods=[pod("a"), pod("b", ready=False, waiting="CrashLoopBackOff")]))
    assert status["phase"] == "Degraded"
    cond = conditions(status)
    assert cond["Ready"]["status"] == "False"
    assert cond["Ready"]["reason"] == "ContainerFailing"
    assert "CrashLoopBackOff" in cond["Ready"]["message"]
    assert "Pod b container engine" in cond["Ready"]["message"]
    assert cond["Stalled"]["status"] == "False"
    assert status["ready"] == "1/2"


def test_failed_on_crash_loop_with_none_ready() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 0),
                                     pods=[pod("a", ready=False, waiting="CrashLoopBackOff"),
                                           pod("b", ready=False, waiting="CrashLoopBackOff")]))
    assert status["phase"] == "Failed"
    assert conditions(status)["Stalled"]["status"] == "True"


def test_failing_init_container_is_reported() -> None:
    status = compute_status(observed(deployment=deployment(1, 1, 0), desired_replicas=1,
                                     pods=[pod("a", ready=False, init_waiting="ImagePullBackOff")]))
    assert status["phase"] == "Failed"
    assert "container pull-model: ImagePullBackOff" in conditions(status)["Ready"]["message"]


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"])
def test_other_persistent_container_failures(reason: str) -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 1),
                                     pods=[pod("a"), pod("b", ready=False, waiting=reason)]))
    assert status["phase"] == "Degraded"
    assert reason in conditions(status)["Ready"]["message"]


def test_container_creating_is_not_a_failure() -> None:
    status = compute_status(observed(deployment=deployment(1, 1, 0), desired_replicas=1,
                                     pods=[pod("a", ready=False, waiting="ContainerCreating")]))
    assert status["phase"] == "Progressing"


# --- conditions' bookkeeping ---------------------------------------------------------------------


def test_every_condition_has_reason_message_time_and_generation() -> None:
    status = compute_status(ready_observed(router=("True", "Available", "ok")))
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Reconciling", "Stalled", "ModelFits",
                                                          "RouterReady"]
    for condition in status["conditions"]:
        assert condition["status"] in ("True", "False", "Unknown")
        assert condition["reason"]
        assert condition["message"]
        assert condition["lastTransitionTime"] == T1
        assert condition["observedGeneration"] == 3


def test_last_transition_time_is_kept_while_the_status_stays() -> None:
    first = compute_status(dataclasses.replace(ready_observed(), now=T0))
    second = compute_status(dataclasses.replace(ready_observed(), now=T1, previous_conditions=first["conditions"]))
    assert all(c["lastTransitionTime"] == T0 for c in second["conditions"])
    assert second == first  # a no-op resync writes nothing new


def test_last_transition_time_moves_when_the_status_flips() -> None:
    loading = compute_status(observed(deployment=deployment(2, 2, 0), pods=[pod("a", ready=False),
                                                                           pod("b", ready=False)], now=T0))
    ready = compute_status(dataclasses.replace(ready_observed(), now=T1, previous_conditions=loading["conditions"]))
    cond = conditions(ready)
    assert cond["Ready"]["lastTransitionTime"] == T1  # False -> True
    assert cond["Reconciling"]["lastTransitionTime"] == T1  # True -> False
    assert cond["Stalled"]["lastTransitionTime"] == T0  # stayed False
    assert cond["ModelFits"]["lastTransitionTime"] == T0


def test_reason_change_without_status_change_keeps_the_time() -> None:
    pending = compute_status(observed(deployment=None, pods=[], now=T0))
    progressing = compute_status(observed(deployment=deployment(2, 2, 0), pods=[pod("a", ready=False)], now=T1,
                                          previous_conditions=pending["conditions"]))
    reconciling = conditions(progressing)["Reconciling"]
    assert reconciling["reason"] == "RollingOut"
    assert reconciling["lastTransitionTime"] == T0


def test_observed_generation_follows_the_object() -> None:
    status = compute_status(dataclasses.replace(ready_observed(), generation=7))
    assert status["observedGeneration"] == 7
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


# --- missing Secrets ------------------------------------------------------------------------------

MISSING = ('Secret "hf-token" (key "token"), referenced by spec.model.tokenSecretRef, does not exist in '
           'namespace "ml": create it, or correct the reference')


def test_missing_secret_keeps_ready_false_and_pending() -> None:
    status = compute_status(observed(deployment=deployment(2, 2, 0), missing_secrets=[MISSING],
                                     pods=[pod("a", ready=False, waiting="CreateContainerConfigError")]))
    assert status["phase"] == "Pending"
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "SecretNotFound")
    # Ours first, then the kubelet's own reason from the Pod.
    assert cond["Ready"]["message"].startswith(MISSING + "; Pod a container engine: CreateContainerConfigError")
    assert (cond["SecretsFound"]["status"], cond["SecretsFound"]["reason"]) == ("False", "SecretNotFound")
    assert cond["SecretsFound"]["message"] == MISSING
    assert cond["Reconciling"]["status"] == "True"  # it proceeds by itself once the Secret exists
    LLMServiceStatus.model_validate(status)


def test_missing_secret_with_serving_replicas_is_degraded_not_ready() -> None:
    # e.g. the Secret was deleted after the Pods started: they serve, but none could restart.
    other = MISSING.replace("hf-token", "api")
    status = compute_status(ready_observed(missing_secrets=[MISSING, other]))
    assert status["phase"] == "Degraded"
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("False", "SecretNotFound")
    assert cond["SecretsFound"]["message"] == f"{MISSING}; {other}"


def test_missing_secret_is_reported_when_scaled_to_zero() -> None:
    status = compute_status(observed(desired_replicas=0, deployment=deployment(0, 0, 0), missing_secrets=[MISSING]))
    assert status["phase"] == "Pending"
    assert conditions(status)["Ready"]["reason"] == "SecretNotFound"


def test_refused_spec_wins_over_missing_secrets() -> None:
    status = compute_status(observed(fit=DOES_NOT_FIT, deployed=False, missing_secrets=[MISSING]))
    assert (status["phase"], conditions(status)["Ready"]["reason"]) == ("Failed", "ModelDoesNotFit")


def test_all_secrets_found() -> None:
    status = compute_status(ready_observed(missing_secrets=[]))
    assert status["phase"] == "Ready"
    cond = conditions(status)
    assert cond["Ready"]["status"] == "True"
    assert (cond["SecretsFound"]["status"], cond["SecretsFound"]["reason"]) == ("True", "AllFound")


def test_no_secrets_found_condition_when_not_checked() -> None:
    assert "SecretsFound" not in conditions(compute_status(ready_observed()))


# --- the last log line of a crashing container ------------------------------------------------------

TRACEBACK = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: unknown flag --foo\n\n"


def crashing_pod(name: str, message: str | None, exit_code: int | None = 1) -> dict[str, Any]:
    result = pod(name, ready=False, waiting="CrashLoopBackOff")
    terminated: dict[str, Any] = {"reason": "Error"}
    if exit_code is not None:
        terminated["exitCode"] = exit_code
    if message is not None:
        terminated["message"] = message
    result["status"]["containerStatuses"][0]["lastState"] = {"terminated": terminated}
    return result


def crash_message(message: str | None, exit_code: int | None = 1) -> str:
    status = compute_status(observed(deployment=deployment(1, 1, 0), desired_replicas=1,
                                     pods=[crashing_pod("a", message, exit_code)]))
    return conditions(status)["Ready"]["message"]


def test_crash_loop_quotes_exit_code_and_last_log_line() -> None:
    assert crash_message(TRACEBACK) == (
        "Pod a container engine: CrashLoopBackOff (exit code 1): back-off 5m0s restarting failed container; "
        'last log line: "ValueError: unknown flag --foo"'
    )


def test_long_last_log_line_is_shortened() -> None:
    message = crash_message("first\n" + "x" * 1000)
    line = message.split('last log line: "', 1)[1].rstrip('"')
    assert len(line) == 200
    assert line.endswith("...")


def test_colour_codes_are_dropped_from_the_last_log_line() -> None:
    assert crash_message("\x1b[31mERROR\x1b[0m engine died\r\n").endswith('last log line: "ERROR engine died"')


@pytest.mark.parametrize("message", [None, "", "\n  \n"])
def test_crash_loop_without_a_log_line(message: str | None) -> None:
    assert crash_message(message) == (
        "Pod a container engine: CrashLoopBackOff (exit code 1): back-off 5m0s restarting failed container"
    )


def test_crash_loop_without_last_state_has_no_exit_code() -> None:
    assert crash_message(None, exit_code=None).endswith("CrashLoopBackOff: back-off 5m0s restarting failed container")


def test_only_crash_loops_quote_the_log() -> None:
    failing = crashing_pod("a", TRACEBACK)
    failing["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = "ImagePullBackOff"
    status = compute_status(observed(deployment=deployment(1, 1, 0), desired_replicas=1, pods=[failing]))
    assert "last log line" not in conditions(status)["Ready"]["message"]


def test_desired_replicas_is_left_to_the_autoscaler_and_removed_when_it_is_turned_off() -> None:
    from dataclasses import replace

    observed = ready_observed()
    assert "desiredReplicas" not in compute_status(replace(observed, autoscaling=True, recorded_desired_replicas=3))
    assert "desiredReplicas" not in compute_status(replace(observed, autoscaling=False))
    left_over = compute_status(replace(observed, autoscaling=False, recorded_desired_replicas=3))
    assert left_over["desiredReplicas"] is None  # a merge patch's removal


def test_an_apply_the_apiserver_forbids_is_stalled_with_its_words() -> None:
    why = ('the operator may not apply Deployment llm: deployments.apps "llm" is forbidden: User '
           '"system:serviceaccount:ops:llm-operator" cannot patch resource "deployments"')
    status = compute_status(ready_observed(forbidden=why))
    assert status["phase"] == "Failed"
    cond = conditions(status)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"], cond["Ready"]["message"]) == ("False", "Forbidden", why)
    assert (cond["Stalled"]["status"], cond["Stalled"]["reason"]) == ("True", "Forbidden")
    LLMServiceStatus.model_validate(status)
