from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core.views import favicon, healthz, readyz, unknown_endpoint
from apps.merchants.views import admin_switch_mode

v0_patterns = [
    # first: POST /v0/apiKeys/verify is called on every call of a merchant's own API, and every
    # include tried before it costs a failed match (the apps' paths do not overlap, so order
    # changes nothing else; the schema sorts its operations)
    path("", include("apps.apikeys.urls")),
    path("schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "docs",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
    path("", include("apps.merchants.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.customers.urls")),
    path("", include("apps.subscriptions.urls")),
    path("", include("apps.payments.urls")),
    path("", include("apps.cards.api_urls")),
    path("", include("apps.entitlements.urls")),
    path("", include("apps.usage.urls")),
    path("", include("apps.invoices.urls")),
    path("", include("apps.settlements.urls")),
    path("", include("apps.webhooks.urls")),
    path("", include("apps.portal.urls")),
    # last: any other /v0 path is the envelope's 404, also with DEBUG on (Django's debug page
    # would answer HTML to a client that parses JSON)
    re_path(r"^.*$", unknown_endpoint),
]

urlpatterns = [
    path("v0/", include(v0_patterns)),  # (the API first: the hot paths are resolved on every call)
    path("admin/mode", admin_switch_mode, name="admin-switch-mode"),
    path("admin/", admin.site.urls),
    path("checkout/", include("apps.checkout.urls")),
    path("portal/", include("apps.portal.page_urls")),
    path("webhooks/", include("apps.cards.urls")),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("readyz", readyz, name="readyz"),
]

handler404 = "apps.core.errors.json_not_found"
handler500 = "apps.core.errors.json_server_error"
