"""The names the operator gives its objects (llm_operator.naming): stable, derived from the LLMService's name."""

from llm_operator import naming
from unit.factories import make_service


def test_every_object_name_derives_from_the_llmservice_name() -> None:
    llm = make_service("vllm", name="chat", namespace="team-a")
    assert naming.engine_name(llm) == "chat"
    assert naming.router_name(llm) == "chat-router"
    assert naming.master_key_secret_name(llm) == "chat-router-key"
    assert naming.pvc_name(llm) == "chat-model-cache"


def test_engine_url_is_the_engine_service_in_its_namespace_on_the_engine_port() -> None:
    assert naming.engine_url(make_service("vllm", name="chat", namespace="team-a")) == "http://chat.team-a.svc:8000"
    assert naming.engine_url(make_service("tgi", name="t", namespace="ml")) == "http://t.ml.svc:80"
    assert naming.engine_url(make_service("ollama", name="o", namespace="ml")) == "http://o.ml.svc:11434"
