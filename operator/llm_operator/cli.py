"""The `llm-operator` command: run the operator, and the offline tools GitOps users need."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llm_operator import __version__
from llm_operator.defaults import (
    ENGINE_IMAGE_ENV,
    OperatorDefaults,
    defaults_from_env,
    defaults_problems,
    defaults_to_env,
)

if TYPE_CHECKING:
    from llm_operator.api.models import LLMService
    from llm_operator.render import SizeLookup

LOG_LEVELS = ("debug", "info", "warning", "error")
TRUE_WORDS = ("1", "true", "yes", "on")
OFFLINE_HELP = (
    "do not read a model's parameter count from the Hugging Face Hub when spec.model.parameters is unset "
    "(online: $HF_ENDPOINT, default https://huggingface.co, with the token in $HF_TOKEN); also $HF_HUB_OFFLINE=1"
)


def _namespaces_from_env() -> list[str]:
    """WATCH_NAMESPACE="a,b" is how Helm charts and OLM tell an operator where to look."""
    raw = os.environ.get("WATCH_NAMESPACE", "")
    return [ns.strip() for ns in raw.split(",") if ns.strip()]


def _defaults_from_args(args: argparse.Namespace) -> OperatorDefaults:
    """Flags win over the environment (LLMOP_VLLM_IMAGE, ...), which the chart may also set."""
    from_env = defaults_from_env(os.environ)
    images = dict(from_env.engine_images)
    images.update({engine: image for engine in ENGINE_IMAGE_ENV if (image := getattr(args, f"{engine}_image"))})
    return OperatorDefaults(
        engine_images=images,
        router_image=args.router_image or from_env.router_image,
        image_pull_secrets=tuple(args.image_pull_secret) or from_env.image_pull_secrets,
    )


def _ensure_user_name() -> None:
    """kopf names this operator instance after the user (getpass.getuser) unless $POD_ID is set. A
    container's UID often has no passwd entry (runAsUser 65532, OpenShift's arbitrary UIDs), where
    getpwuid raises KeyError and kopf dies at start: give it a name from the UID instead."""
    import getpass

    try:
        getpass.getuser()
    except (KeyError, OSError):
        os.environ["USER"] = f"uid-{os.getuid()}"


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _own_namespace() -> str:
    """The Pod's namespace (the Lease lives there), else $POD_NAMESPACE, else default."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as file:
            return file.read().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "default")


def _identity() -> str:
    """This replica's name in the Lease: the Pod's name ($POD_ID), else host and process."""
    import socket

    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


def _stop_at_once(why: str) -> None:
    """The Lease may be another replica's now: stop before writing beside it (the Pod restarts as standby)."""
    logging.getLogger("llm_operator").critical(f"leader election lost ({why}): stopping")
    logging.shutdown()
    os._exit(1)


def cmd_run(args: argparse.Namespace) -> int:
    defaults = _defaults_from_args(args)
    problems = defaults_problems(defaults)
    if problems:
        for problem in problems:
            print(f"llm-operator run: {problem}", file=sys.stderr)
        return 2
    _ensure_user_name()
    if args.kubeconfig:
        # kopf logs in through the kubernetes client, which reads $KUBECONFIG when it is first
        # imported: set it before anything imports kopf or kubernetes.
        os.environ["KUBECONFIG"] = os.path.abspath(args.kubeconfig)
    import kopf

    kopf.configure(
        debug=args.log_level == "debug",
        verbose=args.log_level == "debug",
        quiet=args.log_level in ("warning", "error"),
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.log_level == "info":
        # kopf reports every handler call at INFO; what the operator decides is logged by us.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # One line per liveness/readiness probe of the kubelet says nothing.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Settings the handlers read when they are registered, so they must be set before the import.
    if args.prometheus_url:
        os.environ["LLMOP_PROMETHEUS_URL"] = args.prometheus_url
    if args.autoscale_interval:
        os.environ["LLMOP_AUTOSCALE_INTERVAL"] = str(args.autoscale_interval)
    if args.resync_interval:
        os.environ["LLMOP_RESYNC_INTERVAL"] = str(args.resync_interval)
    os.environ.update(defaults_to_env(defaults))
    from llm_operator import (
        handlers,  # noqa: F401  (importing registers the kopf handlers)
        metrics,
    )

    if args.metrics_port:
        metrics.serve(args.metrics_port)
    if args.leader_elect:
        from llm_operator.controller.leader import lead

        lead(args.leader_elect_namespace or _own_namespace(), args.leader_elect_name, _identity(),
             args.liveness, on_lost=_stop_at_once)
    else:
        metrics.leader.set(1)
    namespaces = args.namespace or _namespaces_from_env()
    clusterwide = args.all_namespaces or not namespaces
    kopf.run(
        clusterwide=clusterwide,
        namespaces=() if clusterwide else namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )
    return 0


def cmd_version(_: argparse.Namespace) -> int:
    print(__version__)
    return 0


def cmd_crd(_: argparse.Namespace) -> int:
    from llm_operator.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def hub_sizes(offline: bool) -> SizeLookup | None:
    """The model sizes `render` and `validate` read from the Hub ($HF_ENDPOINT, with the token in $HF_TOKEN:
    the CLI reads no Secret) for a fit check that lacks spec.model.parameters; None when offline
    (--offline, or $HF_HUB_OFFLINE as huggingface_hub has it). A size that cannot be read is said in one
    line on stderr, and that document's fit check is skipped: the exit code does not change."""
    if offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS:
        return None
    from llm_operator import hub

    token = os.environ.get("HF_TOKEN")
    unreachable: list[hub.HubUnreachable] = []  # one wait for a Hub that does not answer, not one per document

    def lookup(service: LLMService) -> hub.ModelSize | None:
        model = service.spec.model
        endpoint = (os.environ.get("HF_ENDPOINT") or hub.DEFAULT_ENDPOINT).rstrip("/")
        try:
            if unreachable:
                raise unreachable[0]
            return hub.fetch_model_size(model.name, model.revision, token)
        except hub.HubError as error:
            if isinstance(error, hub.HubUnreachable):
                unreachable[:1] = [error]
            hint = " (the CLI sends the token in $HF_TOKEN)" if isinstance(error, hub.HubAccessDenied) else ""
            print(f"could not read the parameter count of {model.name}@{model.revision or hub.DEFAULT_REVISION} "
                  f"from {endpoint}: {error}{hint}; the fit check is skipped; set spec.model.parameters or use "
                  "--offline", file=sys.stderr)
            return None

    return lookup


def cmd_validate(args: argparse.Namespace) -> int:
    from llm_operator.api.validation import validate_files
    from llm_operator.render import fit_warnings

    problems = validate_files(args.file)
    for problem in problems:
        print(problem, file=sys.stderr)
    # The fit check warns and does not fail validation: the apiserver accepts a spec that does not fit
    # (the operator reports ModelFits=False and deploys nothing).
    for warning in fit_warnings(args.file, hub_sizes(args.offline)):
        print(f"warning: {warning}", file=sys.stderr)
    if not problems:
        print(f"{len(args.file)} file(s) valid")
    return 1 if problems else 0


def cmd_render(args: argparse.Namespace) -> int:
    from llm_operator.render import RenderError, render_files

    try:
        sys.stdout.write(render_files(args.file, hub_sizes(args.offline)))
    except RenderError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator in the foreground")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch this namespace (repeatable; kopf globs such as 'team-*' or '!kube-*' work); "
        "default: $WATCH_NAMESPACE, else all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    run.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    run.add_argument(
        "--peering", metavar="NAME",
        help="kopf peering object for running several replicas (one is active); default: standalone",
    )
    run.add_argument(
        "--leader-elect", action="store_true",
        help="run several replicas: only the holder of a coordination.k8s.io Lease reconciles and autoscales; "
        "the others wait for it (see --leader-elect-name)",
    )
    run.add_argument("--leader-elect-name", metavar="NAME", default="llm-operator",
                     help="the Lease's name (default: llm-operator)")
    run.add_argument("--leader-elect-namespace", metavar="NAMESPACE", default=None,
                     help="the Lease's namespace (default: the Pod's own, else $POD_NAMESPACE, else default)")
    run.add_argument("--metrics-port", metavar="PORT", type=int, default=None,
                     help="serve the operator's Prometheus metrics at http://0.0.0.0:PORT/metrics (default: off)")
    run.add_argument(
        "--liveness", metavar="URL", default=None,
        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    run.add_argument(
        "--prometheus-url", default=None,
        help="Prometheus for autoscaling (default: $LLMOP_PROMETHEUS_URL, "
        "else http://prometheus-operated.monitoring.svc:9090)",
    )
    run.add_argument(
        "--autoscale-interval", type=float, default=None, metavar="SECONDS",
        help="how often autoscaling decides (default: $LLMOP_AUTOSCALE_INTERVAL, else 15)",
    )
    run.add_argument(
        "--resync-interval", type=float, default=None, metavar="SECONDS",
        help="how often every LLMService's plan is rebuilt and its status refreshed; an unchanged plan is "
        "applied again every 30 minutes (default: $LLMOP_RESYNC_INTERVAL, else 30)",
    )
    images = run.add_argument_group(
        "images", "operator-wide defaults for the Pods it creates (a registry mirror, an air-gapped copy); an "
        "LLMService's spec.image / spec.router.image still wins",
    )
    for engine, env in ENGINE_IMAGE_ENV.items():
        images.add_argument(f"--{engine}-image", metavar="IMAGE", help=f"{engine} engine image (default: ${env}, "
                            "else the pinned upstream image)")
    images.add_argument("--router-image", metavar="IMAGE",
                        help="LiteLLM router image (default: $LLMOP_ROUTER_IMAGE, else the pinned upstream image)")
    images.add_argument("--image-pull-secret", metavar="NAME", action="append", default=[],
                        help="Secret for pulling the engine and router images, added to every LLMService's Pods "
                        "(repeatable; it must exist in each LLMService's namespace; default: "
                        "$LLMOP_IMAGE_PULL_SECRETS, comma-separated)")
    run.set_defaults(func=cmd_run)

    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    sub.add_parser("crd", help="print the LLMService CustomResourceDefinition").set_defaults(func=cmd_crd)

    validate = sub.add_parser("validate", help="check LLMService YAML offline, with the CRD's rules")
    validate.add_argument("-f", "--file", nargs="+", required=True, help="YAML files (multi-document is fine)")
    validate.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    validate.set_defaults(func=cmd_validate)

    render = sub.add_parser("render", help="print the objects the operator would apply, as YAML")
    render.add_argument("-f", "--file", nargs="+", required=True, help="LLMService YAML files")
    render.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    render.set_defaults(func=cmd_render)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
