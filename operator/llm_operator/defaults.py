"""Operator-wide defaults that a platform team sets once instead of in every LLMService: the image
of each engine and of the router (a registry mirror, an air-gapped copy) and the Secrets for pulling
them. Set by `llm-operator run` flags (the Helm chart's values), passed to the handlers through the
environment, applied to each LLMService by `apply_defaults` before anything is built.

Precedence: an LLMService's spec.image / spec.router.image, else the operator's default, else the
image the operator pins (engines/*.IMAGE, router/objects.IMAGE). Pull secrets add up: the
LLMService's spec.imagePullSecrets first, then the operator's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_operator.api.models import DNS_SUBDOMAIN, IMAGE_REFERENCE, LLMService, LocalObjectReference
from llm_operator.engines import ENGINES

ENGINE_IMAGE_ENV = {engine: f"LLMOP_{engine.upper()}_IMAGE" for engine in ENGINES}
ROUTER_IMAGE_ENV = "LLMOP_ROUTER_IMAGE"
PULL_SECRETS_ENV = "LLMOP_IMAGE_PULL_SECRETS"
# The flag that sets each value, for error messages.
ENGINE_IMAGE_FLAG = {engine: f"--{engine}-image" for engine in ENGINE_IMAGE_ENV}
ROUTER_IMAGE_FLAG = "--router-image"
PULL_SECRET_FLAG = "--image-pull-secret"


@dataclass(frozen=True)
class OperatorDefaults:
    engine_images: Mapping[str, str] = field(default_factory=dict)
    router_image: str | None = None
    image_pull_secrets: tuple[str, ...] = ()


NO_DEFAULTS = OperatorDefaults()


def defaults_from_env(environ: Mapping[str, str]) -> OperatorDefaults:
    images = {engine: environ[var].strip() for engine, var in ENGINE_IMAGE_ENV.items() if environ.get(var, "").strip()}
    secrets = tuple(name.strip() for name in environ.get(PULL_SECRETS_ENV, "").split(",") if name.strip())
    return OperatorDefaults(
        engine_images=images, router_image=environ.get(ROUTER_IMAGE_ENV, "").strip() or None,
        image_pull_secrets=secrets,
    )


def defaults_to_env(defaults: OperatorDefaults) -> dict[str, str]:
    env = {ENGINE_IMAGE_ENV[engine]: image for engine, image in defaults.engine_images.items()}
    if defaults.router_image:
        env[ROUTER_IMAGE_ENV] = defaults.router_image
    if defaults.image_pull_secrets:
        env[PULL_SECRETS_ENV] = ",".join(defaults.image_pull_secrets)
    return env


def _image_problem(flag: str, image: str) -> str | None:
    if len(image) <= 512 and re.fullmatch(IMAGE_REFERENCE, image):
        return None
    return (f"{flag} {image!r} is not an image reference: use [registry[:port]/]repository[:tag][@sha256:digest] "
            "with a lower-case repository, e.g. registry.example.com/vllm/vllm-openai:v0.32.0")


def defaults_problems(defaults: OperatorDefaults) -> list[str]:
    """Each bad value, naming its flag and the fix; empty when all are usable."""
    problems = [
        problem for engine, image in sorted(defaults.engine_images.items())
        if (problem := _image_problem(ENGINE_IMAGE_FLAG.get(engine, engine), image))
    ]
    if defaults.router_image and (problem := _image_problem(ROUTER_IMAGE_FLAG, defaults.router_image)):
        problems.append(problem)
    problems.extend(
        f"{PULL_SECRET_FLAG} {name!r} is not a Secret name: use a lower-case DNS subdomain, e.g. regcred"
        for name in defaults.image_pull_secrets
        if len(name) > 253 or not re.fullmatch(DNS_SUBDOMAIN, name)
    )
    return problems


def apply_defaults(service: LLMService, defaults: OperatorDefaults) -> LLMService:
    """The LLMService as the builders should see it: unset images and pull secrets filled in."""
    if defaults == NO_DEFAULTS:
        return service
    spec = service.spec
    engine_image = spec.image or defaults.engine_images.get(spec.engine) or None
    router_image = spec.router.image or defaults.router_image or None
    own = [ref.name for ref in spec.image_pull_secrets]
    secrets = own + [name for name in defaults.image_pull_secrets if name not in own]
    router = spec.router.model_copy(update={"image": router_image})
    new_spec = spec.model_copy(update={
        "image": engine_image, "router": router,
        "image_pull_secrets": [LocalObjectReference(name=name) for name in secrets],
    })
    return service.model_copy(update={"spec": new_spec})
