"""Every 503 the API can give is documented on every operation (issue 19, item 1: every status
returned documented): DATABASE_UNAVAILABLE and SERVICE_UNAVAILABLE, with Retry-After; and every
operation, when the database fails its request, answers that documented 503."""

import re
import uuid

import pytest
from django.db import OperationalError, connection

from tests.conftest import Api
from tests.core.schema_check import CheckedApi, SchemaCheck, load_document
from tests.factories import issue_key


@pytest.fixture
def schema(client, db):
    return SchemaCheck(load_document(client))


def test_every_operation_documents_the_503s_with_retry_after(schema):
    operations = list(schema.operations())
    assert operations
    for _, _, operation in operations:
        name = operation["operationId"]
        unavailable = operation["responses"].get("503")
        assert unavailable is not None, name
        assert "DATABASE_UNAVAILABLE" in unavailable["description"], name
        assert "SERVICE_UNAVAILABLE" in unavailable["description"], name
        assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}, name
        assert unavailable["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, name
    pay = next(o for _, _, o in operations if o["operationId"] == "invoices_pay")
    assert "STRIPE_UNAVAILABLE" in pay["responses"]["503"]["description"]


def concrete(template: str) -> str:
    parts = re.split(r"(\{[^/]+?\})", template)
    return "".join(str(uuid.uuid4()) if part.startswith("{") else part for part in parts)


def test_every_operation_answers_the_documented_503_when_the_database_fails_it(schema, merchant):
    api = CheckedApi(Api(issue_key(merchant), merchant), schema)

    def dropped(execute, sql, params, many, context):
        raise OperationalError("terminating connection due to administrator command")

    checked = 0
    for method, template, operation in schema.operations():
        path = concrete(template)
        with connection.execute_wrapper(dropped):
            send = getattr(api, method)
            response = send(path) if method in ("get", "delete") else send(path, {})
        name = operation["operationId"]
        if response.status_code == 401:
            continue  # (a customer's own operation: its X-API-Key is looked up elsewhere first)
        assert response.status_code == 503, (name, response.status_code, response.content[:300])
        assert response.json()["code"] == "DATABASE_UNAVAILABLE", name
        assert response["Retry-After"] == "1", name
        checked += 1
    assert checked >= len(list(schema.operations())) - 3
