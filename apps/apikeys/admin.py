"""Customer API keys in the admin: the keys each customer holds (prefix, tier, last use,
revocation), a key's queries this quota month against its tier's limit, and "Revoke" through the
service the API's DELETE calls. Keys are created through the API only (the secret is shown once,
to the caller), and their secret hash is never shown. Tier changes waiting for, or applied after,
their payment are listed read-only."""

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from redis.exceptions import RedisError

from apps.apikeys.models import CustomerApiKey, TierChange
from apps.apikeys.services import api_key_revoke
from apps.apikeys.usage import queries_this_month
from apps.core.admin import ReadOnlyMixin, run_per_row
from apps.core.errors import ApiError, ServiceUnavailable
from apps.customers.admin import customer_admin_link_add
from apps.merchants.admin_base import TenantAdmin


def _link(url_name: str, pk, text) -> str:
    """A link to another admin page by its URL name (the text alone where it is not registered)."""
    try:
        url = reverse(url_name, args=[pk])
    except NoReverseMatch:
        return str(text)
    return format_html('<a href="{}">{}</a>', url, text)


def key_name(key: CustomerApiKey) -> str:
    return f"Key {key.prefix}…"


def revoke(key: CustomerApiKey) -> None:
    """api_key_revoke, with Redis unreachable reported as a refusal (its transaction rolled back:
    the key is not revoked, and verify, which reads Redis, keeps answering as before)."""
    try:
        api_key_revoke(key=key)
    except RedisError as exc:
        raise ServiceUnavailable(
            f"not revoked: Redis, which verify reads, cannot be reached ({type(exc).__name__}). Try again."
        ) from exc


def usage_against_quota(key: CustomerApiKey) -> str:
    """`queries counted / monthly limit` this quota month, as GET /v0/billing/usage answers it,
    or why it cannot be read now."""
    try:
        used, limit = queries_this_month(key)
    except RedisError as exc:
        return f"Unavailable: Redis, which keeps the counts, cannot be reached ({type(exc).__name__}). Try again later."
    except ApiError as exc:  # (the plan is no longer a tier: its features were edited)
        return f"Unavailable: {exc.message}"
    if limit is None:
        return f"{used:,} queries this month (no monthly limit)"
    return f"{used:,} / {limit:,} queries this month ({max(limit - used, 0):,} left)"


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return (("no", "Active"), ("yes", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class TierFilter(admin.SimpleListFilter):
    """The tier (plan code) of the key's subscription, among those of the keys the user may see
    (a filter on the plan itself would list every merchant's plans)."""

    title = "tier"
    parameter_name = "tier"

    def lookups(self, request, model_admin):
        codes = (
            model_admin.get_queryset(request)
            .order_by("subscription__plan__code")
            .values_list("subscription__plan__code", flat=True)
            .distinct()
        )
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(subscription__plan__code=self.value())
        return queryset


def customer_keys_link(customer) -> str:
    """On the customer's admin page: its keys, as the key list filtered to the customer."""
    keys = CustomerApiKey.objects.filter(customer=customer)
    total = keys.count()
    if not total:
        return "No API keys"
    url = f"{reverse('admin:apikeys_customerapikey_changelist')}?customer__id__exact={customer.pk}"
    active = keys.filter(revoked_at__isnull=True).count()
    return format_html('<a href="{}">API keys: {} ({} active)</a>', url, total, active)


customer_admin_link_add(customer_keys_link)


@admin.register(CustomerApiKey)
class CustomerApiKeyAdmin(ReadOnlyMixin, TenantAdmin):
    """Keys are issued through POST /v0/billing/apiKeys (their secret is shown once, to the
    caller); here they are viewed and revoked."""

    staff_permissions = ("view", "change")  # change: the revoke action

    list_display = (
        "prefix",
        "customer",
        "tier",
        "organization_name",
        "created_at",
        "last_used_at",
        "revoked",
    )
    list_select_related = ("merchant", "customer", "subscription__plan")
    list_filter = (RevokedFilter, TierFilter)
    search_fields = ("prefix", "customer__email")
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "id",
        "prefix",
        "customer_link",
        "organization_name",
        "subscription_link",
        "tier",
        "usage_this_month",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    fields = readonly_fields  # (never secret_hash)
    actions = ("revoke_keys",)

    @admin.display(description="tier", ordering="subscription__plan__code")
    def tier(self, obj):
        return obj.subscription.plan.code

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def revoked(self, obj):
        return obj.revoked_at is not None

    @admin.display(description="customer")
    def customer_link(self, obj):
        return _link("admin:customers_customer_change", obj.customer_id, obj.customer)

    @admin.display(description="subscription")
    def subscription_link(self, obj):
        return _link("admin:subscriptions_subscription_change", obj.subscription_id, obj.subscription)

    @admin.display(description="usage against the quota")
    def usage_this_month(self, obj):
        return usage_against_quota(obj)

    @admin.action(
        description="Revoke the selected keys (the next verify of each answers REVOKED)",
        permissions=["service_action"],
    )
    def revoke_keys(self, request, queryset):
        keys = list(queryset.select_related("subscription").order_by("created_at", "id"))
        already = [key for key in keys if key.revoked_at is not None]
        run_per_row(
            self,
            request,
            [key for key in keys if key.revoked_at is None],
            revoke,
            "Revoked {count} key(s).",
            describe=key_name,
        )
        if already:
            self.message_user(
                request,
                "Already revoked: "
                + ", ".join(f"{key_name(key)} at {key.revoked_at:%Y-%m-%d %H:%M} UTC" for key in already),
                messages.INFO,
            )


class AppliedFilter(admin.SimpleListFilter):
    title = "applied"
    parameter_name = "applied"

    def lookups(self, request, model_admin):
        return (("no", "Waiting for payment"), ("yes", "Applied"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(applied_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(applied_at__isnull=False)
        return queryset


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyMixin, TenantAdmin):
    """A tier change bought through POST /v0/billing/checkout: its payment session, and the tier
    its subscription moved to once that was paid. Written by the services only."""

    staff_permissions = ("view",)

    list_display = ("created_at", "session_link", "subscription_link", "plan", "applied_at")
    list_select_related = ("merchant", "session", "subscription__customer", "subscription__plan", "plan")
    list_filter = (AppliedFilter,)
    search_fields = ("subscription__customer__email",)
    ordering = ("-created_at", "-id")
    readonly_fields = ("id", "session_link", "subscription_link", "plan", "applied_at", "created_at", "updated_at")
    fields = readonly_fields

    @admin.display(description="payment session")
    def session_link(self, obj):
        return _link("admin:payments_paymentsession_change", obj.session_id, obj.session)

    @admin.display(description="subscription")
    def subscription_link(self, obj):
        return _link("admin:subscriptions_subscription_change", obj.subscription_id, obj.subscription)
