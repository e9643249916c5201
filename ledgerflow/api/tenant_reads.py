"""What every tenant-scoped read endpoint repeats: its OpenAPI operation (the optional ``tenant``
parameter, 200 with a JSON body, the problems of an authenticated call) and the principal it
answers for (any role of the tenant, the ``tenant`` parameter equal to the token's)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from ledgerflow.api.authentication import require_query_tenant, requires_tenant_role
from ledgerflow.api.spec import AUTHED, TENANT_PARAM, Handler, Schema, json_response, operation, problems
from ledgerflow.auth.principals import Principal

__all__ = ["reader_of", "tenant_read"]


def tenant_read(
    operation_id: str,
    summary: str,
    tag: str,
    body: Schema,
    description: str,
    parameters: tuple[Schema, ...] = (),
) -> Callable[[Handler], Handler]:
    """``@operation`` of a GET any role of the tenant may call, answering ``body`` with 200; with
    query ``parameters`` of its own, a value out of their range is a 422."""
    return operation(
        operation_id,
        summary=summary,
        tags=[tag],
        parameters=[*parameters, TENANT_PARAM],
        responses={
            "200": json_response(body, description),
            **problems(*AUTHED, *((422,) if parameters else ())),
        },
    )


def reader_of(request: Request) -> Principal:
    """The caller, with any role of the tenant it reads (401/403 otherwise)."""
    principal = requires_tenant_role(request)
    require_query_tenant(request, principal)
    return principal
