"""Per-uid operator memory (llm_operator.controller.state)."""

from collections import deque

from llm_operator.controller.state import ServiceState, States


def test_state_is_per_uid_and_dropped_in_one_place() -> None:
    states = States()
    first = states.of("uid-1")
    first.replicas = 8
    assert states.of("uid-1") is first
    # The same name created again is a new uid: nothing of the old object carries over.
    assert states.of("uid-2").replicas is None
    states.drop("uid-1")
    assert states.get("uid-1") is None and len(states) == 1
    assert states.of("uid-1").replicas is None


def test_warn_once_per_topic_and_message() -> None:
    state = ServiceState("uid")
    assert state.warn_once("spec", "bad field")
    assert not state.warn_once("spec", "bad field")
    assert state.warn_once("secrets", "bad field")  # another topic
    assert state.warn_once("spec", "another problem")


def test_stop_autoscaling_forgets_the_autoscalers_memory() -> None:
    state = ServiceState("uid", replicas=3, scaling=("True", "Scaling", "x"), history=deque([1, 2]))
    state.stop_autoscaling()
    assert (state.replicas, state.scaling, state.scaler, list(state.history)) == (None, None, None, [])
