"""POST/GET /v0/products, GET/PATCH /v0/products/{id}."""

from tests.catalog.conftest import assert_error, assert_field_error, make_product


def test_create_product_returns_the_contract_shape(api):
    response = api.post(
        "/v0/products",
        {
            "name": "Search API",
            "description": "Web search",
            "merchantId": str(api.merchant.public_id),
            "metadata": {"team": "core"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "livemode",
        "merchantId",
        "name",
        "description",
        "metadata",
        "createdAt",
        "updatedAt",
    }
    assert body["object"] == "product"
    assert body["livemode"] is True
    assert body["merchantId"] == str(api.merchant.public_id)
    assert (body["name"], body["description"], body["metadata"]) == ("Search API", "Web search", {"team": "core"})
    assert body["createdAt"].endswith("Z")


def test_get_product_and_list_with_pagination(api):
    ids = [make_product(api, name=f"P{i}")["id"] for i in range(3)]
    assert api.get(f"/v0/products/{ids[1]}").json()["name"] == "P1"
    page = api.get("/v0/products", {"limit": 2, "offset": 1}).json()
    assert page["object"] == "list"
    assert page["pagination"] == {"limit": 2, "offset": 1, "total": 3}
    assert [p["id"] for p in page["data"]] == [ids[1], ids[0]]  # newest first


def test_patch_changes_only_the_fields_sent(api):
    product = make_product(api, description="old", metadata={"a": 1})
    response = api.patch(f"/v0/products/{product['id']}", {"description": "new"})
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["metadata"]) == ("Search API", "new", {"a": 1})


def test_missing_name_is_400_naming_it(api):
    assert_field_error(api.post("/v0/products", {"description": "x"}), "name", "REQUIRED")


def test_blank_name_in_patch_is_400(api):
    product = make_product(api)
    assert_field_error(api.patch(f"/v0/products/{product['id']}", {"name": ""}), "name")


def test_unknown_field_is_400_naming_it(api):
    body = assert_field_error(api.post("/v0/products", {"name": "x", "colour": "red"}), "colour", "UNKNOWN_FIELD")
    assert "name" in body["errors"][0]["message"]


def test_wrong_types_are_400(api):
    assert_field_error(api.post("/v0/products", {"name": 5}), "name", "NOT_A_STRING")
    assert_field_error(api.post("/v0/products", {"name": "x", "metadata": [1]}), "metadata")


def test_merchant_id_of_another_merchant_is_403(api, other_api):
    response = api.post("/v0/products", {"name": "x", "merchantId": str(other_api.merchant.public_id)})
    assert_error(response, 403, "MERCHANT_MISMATCH")


def test_another_merchant_gets_404(api, other_api):
    product = make_product(api)
    assert_error(other_api.get(f"/v0/products/{product['id']}"), 404, "NOT_FOUND")
    assert_error(other_api.patch(f"/v0/products/{product['id']}", {"name": "stolen"}), 404, "NOT_FOUND")
    assert other_api.get("/v0/products").json()["data"] == []
    assert api.get(f"/v0/products/{product['id']}").json()["name"] == "Search API"


def test_sandbox_and_live_are_separate(api, test_api):
    live = make_product(api, name="live")
    sandbox = make_product(test_api, name="sandbox")
    assert sandbox["livemode"] is False
    assert sandbox["merchantId"] == live["merchantId"]
    assert_error(test_api.get(f"/v0/products/{live['id']}"), 404, "NOT_FOUND")
    assert_error(api.get(f"/v0/products/{sandbox['id']}"), 404, "NOT_FOUND")
    assert [p["name"] for p in test_api.get("/v0/products").json()["data"]] == ["sandbox"]


def test_an_id_that_is_not_a_uuid_is_404(api):
    assert_error(api.get("/v0/products/not-an-id"), 404, "NOT_FOUND")
