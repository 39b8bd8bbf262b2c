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
