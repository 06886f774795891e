"""Shared building blocks of the custom resources: the camelCase model base, name types and
the CRD metadata a root model declares for :mod:`forensic_checkpoint.api.crds`.

Every bound here (``max_length`` on strings and lists) ends up in the CRD schema. The API server
needs them to estimate the cost of CEL rules such as ``self == oldSelf``, and they keep an
object far below etcd's size limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "forensic-checkpoint.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: RFC 1123 label (container names, namespaces): lower case, digits, '-', at most 63.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: RFC 1123 subdomain (pod names): labels joined by '.', at most 253.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
#: A CamelCase reason as Kubernetes conditions use them.
Reason = Annotated[
    str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
]
ShortText = Annotated[str, Field(max_length=1024)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", min_length=64, max_length=64)]


class KubeModel(BaseModel):
    """camelCase in Kubernetes objects, snake_case in Python; unknown fields ignored so that an
    older operator can read objects written by a newer one.

    A field's docstring (the string literal under it) is its description in the CRD, which
    ``kubectl explain`` shows; a test fails on a CRD property without one."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
        use_attribute_docstrings=True,
    )

    def to_kube(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class CrdInfo:
    """What a root model declares about its CustomResourceDefinition, besides its schema."""

    kind: str
    plural: str
    singular: str
    scope: str  # "Namespaced" or "Cluster"
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("forensic-checkpoint",)
    printer_columns: tuple[PrinterColumn, ...] = ()
    group: str = GROUP
    version: str = VERSION
    status_subresource: bool = True
    extra_labels: dict[str, str] = field(default_factory=dict)
    #: CEL rules on the whole object (``x-kubernetes-validations`` at the schema's root): the
    #: place for a transition rule that must also run when a field or ``status`` is removed.
    validations: tuple[dict[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


class RootModel(KubeModel):
    """A custom resource: subclasses declare ``crd`` and the fields ``spec`` and ``status``.

    ``metadata`` is kept as the raw mapping: the API server owns its schema.
    """

    crd: ClassVar[CrdInfo]

    api_version: str = API_VERSION
    kind: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
