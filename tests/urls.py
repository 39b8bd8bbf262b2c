from django.urls import include, path

from billing_platform.urls import urlpatterns as platform_urlpatterns

urlpatterns = [
    path("v0/", include("tests.tenancy_app.urls")),
    *platform_urlpatterns,
]

handler404 = "apps.core.errors.json_not_found"
handler500 = "apps.core.errors.json_server_error"
