import pytest


def test_list_envelope_and_pagination(api):
    for i in range(5):
        api.post("/v0/widgets", {"name": f"w{i}"})
    body = api.get("/v0/widgets", {"limit": 2, "offset": 1}).json()
    assert body["object"] == "list"
    assert [w["name"] for w in body["data"]] == ["w1", "w2"]
    assert body["pagination"] == {"limit": 2, "offset": 1, "total": 5}


@pytest.mark.parametrize(
    "params, field",
    [({"limit": "x"}, "limit"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"offset": -1}, "offset")],
)
def test_bad_pagination_is_400_naming_the_parameter(api, params, field):
    response = api.get("/v0/widgets", params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["errors"][0]["field"] == field


def test_validation_error_envelope_lists_each_field(api):
    response = api.post("/v0/widgets", {"name": "", "sleep": "soon"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"name", "sleep"}
    assert all(e["message"] and e["code"] for e in body["errors"])


def test_malformed_json_is_400(api):
    response = api.client.post("/v0/widgets", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"


def test_rule_error_is_422_in_the_envelope(api):
    response = api.post("/v0/widgets", {"name": "x", "fail": "422"})
    assert response.status_code == 422
    assert response.json() == {
        "error": "unprocessable",
        "message": "widgets named like this are refused",
        "code": "WIDGET_REFUSED",
        "details": {},
    }


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
@pytest.mark.parametrize("path", ["/v0/nothing-here", "/v0/customers/x/y/z", "/v0/", "/v0/customers/"])
def test_unknown_v0_path_is_the_envelopes_404(client, db, settings, debug, method, path):
    settings.DEBUG = debug
    response = getattr(client, method)(path, content_type="application/json")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "not_found",
        "message": f"No endpoint {method.upper()} {path}.",
        "code": "NOT_FOUND",
        "details": {},
    }


def test_unhandled_error_is_500_in_the_envelope(api):
    response = api.post("/v0/widgets", {"name": "x", "fail": "500"})
    assert response.status_code == 500
    assert response.json()["code"] == "INTERNAL_ERROR"


def test_health_and_readiness(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
    body = client.get("/readyz").json()
    assert body == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_the_site_has_an_icon_so_no_page_logs_a_failed_favicon_request(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg") and "max-age" in response["Cache-Control"]
