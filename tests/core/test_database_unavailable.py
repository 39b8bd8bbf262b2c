"""A request whose database connection fails is a 503 with Retry-After (nothing of it was
written: its transaction rolled back), never a 500; tests/integration/test_faults.py drops the
connections of real gunicorn processes mid-load."""

import json

from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from apps.core.api import plain_json_post
from apps.core.errors import api_exception_handler


def test_the_api_handler_answers_a_lost_database_connection_with_503_and_retry_after():
    for error in (OperationalError("terminating connection due to administrator command"), InterfaceError("closed")):
        response = api_exception_handler(error, {})
        assert response.status_code == 503
        assert response["Retry-After"] == "1"
        assert response.data["code"] == "DATABASE_UNAVAILABLE"


def test_the_usage_fast_path_answers_a_lost_database_connection_with_503():
    def authenticate(request):
        raise OperationalError("terminating connection due to administrator command")

    request = RequestFactory().post("/v0/usage", data=b"{}", content_type="application/json")
    response = plain_json_post(request, lambda merchant, data: (201, {}), authenticate=authenticate)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert json.loads(response.content)["code"] == "DATABASE_UNAVAILABLE"


def test_redis_unreachable_for_a_moment_is_a_503_on_both_paths():
    from redis.exceptions import BusyLoadingError, ConnectionError

    for error in (ConnectionError("Connection refused"), BusyLoadingError("loading the dataset")):
        response = api_exception_handler(error, {})
        assert (response.status_code, response["Retry-After"]) == (503, "1")

        def authenticate(request, error=error):
            raise error

        request = RequestFactory().post("/v0/apiKeys/verify", data=b"{}", content_type="application/json")
        answer = plain_json_post(request, lambda merchant, data: (200, {}), authenticate=authenticate)
        assert (answer.status_code, json.loads(answer.content)["code"]) == (503, "SERVICE_UNAVAILABLE")
