"""Request limits applied before any view reads the body."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse

from apps.core.errors import error_body


class RequestSizeLimitMiddleware:
    """A body larger than `MAX_REQUEST_BODY_BYTES` is refused with 413 before it is read: in the
    API's error envelope under /v0 (code REQUEST_TOO_LARGE), as plain text elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.MAX_REQUEST_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            message = (
                f"The request body is {length} bytes; the limit is {limit} bytes ({limit / 1024 / 1024:g} MiB). "
                "Send it in smaller parts (a usage batch holds up to 1,000 events)."
            )
            if request.path.startswith("/v0"):
                body = error_body("request_too_large", message, "REQUEST_TOO_LARGE", {"limit": limit, "size": length})
                response = JsonResponse(body, status=413)
            else:
                response = HttpResponse(message, status=413, content_type="text/plain")
            return response
        return self.get_response(request)
