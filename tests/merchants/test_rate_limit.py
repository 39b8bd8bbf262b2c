from apps.merchants.models import ApiKey


def set_limit(api, limit):
    ApiKey.objects.filter(merchant=api.merchant).update(rate_limit=limit)


def test_request_past_the_limit_gets_429_with_retry_after(api, time_machine):
    time_machine.move_to("2026-11-22T12:00:00.250Z", tick=False)
    set_limit(api, 3)
    statuses = [api.get("/v0/merchants/me").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get("/v0/merchants/me")
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "RATE_LIMITED"
    time_machine.move_to("2026-11-22T12:00:01.100Z", tick=False)
    assert api.get("/v0/merchants/me").status_code == 200


def test_a_limit_of_zero_is_off(api, settings):
    settings.API_DEFAULT_RATE_LIMIT = 1
    set_limit(api, 0)
    assert {api.get("/v0/merchants/me").status_code for _ in range(20)} == {200}


def test_platform_default_applies_when_the_key_has_none(api, settings, time_machine):
    time_machine.move_to("2026-11-22T12:00:00.100Z", tick=False)
    settings.API_DEFAULT_RATE_LIMIT = 2
    assert [api.get("/v0/merchants/me").status_code for _ in range(3)] == [200, 200, 429]


def test_limits_are_per_key(api, other_api, time_machine):
    time_machine.move_to("2026-11-22T12:00:00.100Z", tick=False)
    set_limit(api, 1)
    assert api.get("/v0/merchants/me").status_code == 200
    assert api.get("/v0/merchants/me").status_code == 429
    assert other_api.get("/v0/merchants/me").status_code == 200
