"""llm-operator: serve large language models on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llm-operator")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

GROUP = "serving.llm-operator.io"
VERSION = "v1alpha1"
KIND = "LLMService"
PLURAL = "llmservices"
FIELD_MANAGER = "llm-operator"
