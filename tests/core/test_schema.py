import yaml
from openapi_spec_validator import validate


def test_schema_is_a_valid_openapi_3_document(client, db):
    response = client.get("/v0/schema")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    validate(document)
    assert "/v0/merchants/me" in document["paths"]
    assert "merchantSecretKey" in document["components"]["securitySchemes"]


def test_docs_page_loads_its_assets_locally(client, db):
    response = client.get("/v0/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    assert "/static/drf_spectacular_sidecar/" in html


def test_schema_generation_has_no_warnings(tmp_path, db):
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))
    document = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    assert document["paths"]["/v0/usage"]["post"]["operationId"] == "usage_create"
    assert document["paths"]["/v0/usage/batch"]["post"]["operationId"] == "usage_batch_create"


def test_list_responses_are_documented_as_the_list_envelope(client, db):
    document = yaml.safe_load(client.get("/v0/schema").content)
    schemas = document["components"]["schemas"]
    for path in ("/v0/plans", "/v0/prices", "/v0/billableMetrics", "/v0/subscriptions", "/v0/customers"):
        schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert set(schema["required"]) >= {"object", "data", "pagination"}, (path, schema)
        assert schema["properties"]["data"]["type"] == "array", path
