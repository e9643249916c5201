"""Read-only Schema Registry API under ``/registry``, served from the shipped ``schemas/``.

Stock Confluent clients (``SchemaRegistryClient``, ``AvroDeserializer``), topic browsers and
schema tools take ``http://<edge>/registry`` as their registry URL. Ids and subjects are
``ledgerflow.contracts.schema_ids``: an id is derived from the schema's single-object
fingerprint, a subject is a record name. Errors are problem+json that also carry the
registry's ``error_code`` and ``message``, which Confluent clients read. No token: the schemas
ship with the package and in docs/asyncapi.yaml; nothing here is tenant data. Writes are not
routed (405): schemas change by a release (docs/contracts.md), never at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ledgerflow.api.problems import problem, read_json
from ledgerflow.api.spec import INT, PUBLIC, STR, Handler, obj, operation, problems
from ledgerflow.contracts.registry import default_registry
from ledgerflow.contracts.schema_ids import COMPATIBILITY, Registered, SchemaCatalog
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import ValidationError

MOUNT = "/registry"
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
TAG = "registry"


@functools.cache
def catalog() -> SchemaCatalog:
    return SchemaCatalog(default_registry())


class RegistryResponse(Response):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _refused(status: int, error_code: int, message: str) -> Response:
    return problem(status, message, message, error_code=error_code, message=message)


def _subject_missing(subject: str) -> Response:
    return _refused(404, 40401, f"Subject '{subject[:200]}' not found.")


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": schema}}}


REGISTRY_ERROR = {
    "description": "Not found (40401 subject, 40402 version, 40403 schema), or invalid (42201, 42202)",
    "content": {
        "application/problem+json": {
            "schema": obj(["error_code", "message"], error_code=INT, message=STR, title=STR, detail=STR)
        }
    },
}
REGISTERED = obj(["subject", "version", "id", "schema"], subject=STR, version=INT, id=INT, schema=STR)
SUBJECT = {"name": "subject", "in": "path", "required": True, "schema": STR}
VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": STR,
    "description": "a version number or `latest`",
}
SCHEMA_ID = {"name": "schema_id", "in": "path", "required": True, "schema": STR}


def _op(
    operation_id: str, summary: str, response: dict[str, Any], *params: dict[str, Any], **more: Any
) -> Callable[[Handler], Handler]:
    errors = problems(400, 408, 413) if "requestBody" in more else {}
    return operation(
        operation_id,
        summary=summary,
        tags=[TAG],
        security=PUBLIC,
        parameters=list(params),
        responses={"200": response, "404": REGISTRY_ERROR, "422": REGISTRY_ERROR, **errors},
        **more,
    )


@_op(
    "listSubjects",
    "Registry: every subject (one per record type)",
    _ok({"type": "array", "items": STR}, "Subjects"),
)
async def list_subjects(request: Request) -> Response:
    return RegistryResponse(sorted(catalog().subjects))


def _versions_of(request: Request) -> tuple[Registered, ...] | Response:
    subject = request.path_params["subject"]
    found = catalog().subjects.get(subject)
    return _subject_missing(subject) if found is None else found


@_op(
    "listSubjectVersions",
    "Registry: the versions of a subject",
    _ok({"type": "array", "items": INT}, "Version numbers"),
    SUBJECT,
)
async def list_versions(request: Request) -> Response:
    found = _versions_of(request)
    if isinstance(found, Response):
        return found
    return RegistryResponse([r.version for r in found])


def _one_version(request: Request) -> Registered | Response:
    subject, version = request.path_params["subject"], request.path_params["version"]
    if subject not in catalog().subjects:
        return _subject_missing(subject)
    if version not in ("latest", "-1") and not ascii_digits(version):
        return _refused(422, 42202, f"The specified version '{version[:40]}' is not a valid version id.")
    try:
        return catalog().version(subject, version)
    except KeyError:
        return _refused(404, 40402, f"Version {version[:40]} not found.")


@_op(
    "getSubjectVersion", "Registry: one version of a subject", _ok(REGISTERED, "The schema"), SUBJECT, VERSION
)
async def get_version(request: Request) -> Response:
    found = _one_version(request)
    return found if isinstance(found, Response) else RegistryResponse(found.answer())


@_op(
    "getSubjectVersionSchema",
    "Registry: one version's schema alone",
    _ok({"type": "object"}, "The Avro schema"),
    SUBJECT,
    VERSION,
)
async def get_version_schema(request: Request) -> Response:
    found = _one_version(request)
    return found if isinstance(found, Response) else RegistryResponse(orjson.loads(found.schema))


@_op(
    "lookupSchema",
    "Registry: which version of a subject a schema is (read-only; registers nothing)",
    _ok(REGISTERED, "The registered version with the same canonical form"),
    SUBJECT,
    requestBody={
        "required": True,
        "content": {MEDIA_TYPE: {"schema": obj(["schema"], schema=STR, schemaType=STR)}},
    },
)
async def lookup_schema(request: Request) -> Response:
    subject = request.path_params["subject"]
    if subject not in catalog().subjects:
        return _subject_missing(subject)
    body = await read_json(request)
    text, kind = body.get("schema"), body.get("schemaType", "AVRO")
    if not isinstance(text, str) or kind != "AVRO":
        return _refused(422, 42201, "Invalid schema: expected {'schema': '<Avro schema as JSON text>'}")
    try:
        found = catalog().lookup(subject, text)
    except ValidationError as exc:
        return _refused(422, 42201, f"Invalid schema: {exc}")
    if found is None:
        return _refused(404, 40403, "Schema not found")
    return RegistryResponse(found.answer())


def _by_id(request: Request) -> Registered | Response:
    raw = request.path_params["schema_id"]
    found = catalog().by_id.get(int(raw)) if ascii_digits(raw, max_digits=10) else None
    return _refused(404, 40403, "Schema not found") if found is None else found


@_op("getSchemaById", "Registry: a schema by id", _ok(obj(["schema"], schema=STR), "The schema"), SCHEMA_ID)
async def get_schema(request: Request) -> Response:
    found = _by_id(request)
    return found if isinstance(found, Response) else RegistryResponse({"schema": found.schema})


@_op(
    "getSchemaSubjectsById",
    "Registry: the subjects of a schema id",
    _ok({"type": "array", "items": STR}, "Subjects"),
    SCHEMA_ID,
)
async def get_schema_subjects(request: Request) -> Response:
    found = _by_id(request)
    return found if isinstance(found, Response) else RegistryResponse([found.subject])


@_op(
    "getSchemaVersionsById",
    "Registry: the subject versions of a schema id",
    _ok({"type": "array", "items": obj(["subject", "version"], subject=STR, version=INT)}, "Versions"),
    SCHEMA_ID,
)
async def get_schema_versions(request: Request) -> Response:
    found = _by_id(request)
    if isinstance(found, Response):
        return found
    return RegistryResponse([{"subject": found.subject, "version": found.version}])


@_op("listSchemaTypes", "Registry: schema types served", _ok({"type": "array", "items": STR}, "AVRO"))
async def schema_types(request: Request) -> Response:
    return RegistryResponse(["AVRO"])


@_op(
    "getRegistryConfig",
    "Registry: the compatibility level every new version meets",
    _ok(obj(["compatibilityLevel"], compatibilityLevel=STR), "FULL"),
)
async def get_config(request: Request) -> Response:
    return RegistryResponse({"compatibilityLevel": COMPATIBILITY})


@_op(
    "getSubjectConfig",
    "Registry: a subject's compatibility level",
    _ok(obj(["compatibilityLevel"], compatibilityLevel=STR), "FULL"),
    SUBJECT,
)
async def get_subject_config(request: Request) -> Response:
    found = _versions_of(request)
    if isinstance(found, Response):
        return found
    return RegistryResponse({"compatibilityLevel": COMPATIBILITY})


@_op("getRegistryMode", "Registry: always READONLY", _ok(obj(["mode"], mode=STR), "READONLY"))
async def get_mode(request: Request) -> Response:
    return RegistryResponse({"mode": "READONLY"})
