from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers

from apps.core.errors import ApiError
from apps.merchants.admin_base import TenantAdmin, admin_tenant
from apps.merchants.models import ApiKey, Merchant, User
from apps.merchants.permissions import MERCHANT_STAFF_GROUP
from apps.merchants.secret_reveal import secret_hold, secret_take
from apps.merchants.services import (
    api_key_create,
    api_key_revoke,
    api_key_roll,
    merchant_create,
    merchant_staff_grant,
)


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    """Platform operators manage merchants; each is created with its sandbox twin."""

    list_display = ("name", "contact_email", "livemode", "commission_rate", "created_at")
    list_filter = ("livemode",)
    search_fields = ("name", "contact_email")
    readonly_fields = ("id", "livemode", "live_merchant", "created_at", "updated_at")
    fields = ("id", "name", "contact_email", "commission_rate", "payout_wallet_address", "livemode", "live_merchant")

    def save_model(self, request, obj, form, change):
        if change:
            from apps.merchants.services import merchant_update

            merchant_update(
                merchant=obj,
                name=obj.name,
                contact_email=obj.contact_email,
                commission_rate=obj.commission_rate,
                payout_wallet_address=obj.payout_wallet_address,
            )
            return
        created = merchant_create(
            name=obj.name,
            contact_email=obj.contact_email,
            commission_rate=obj.commission_rate,
            payout_wallet_address=obj.payout_wallet_address,
        )
        obj.pk = created.pk
        obj._state.adding = False


class StaffUserChangeForm(UserChangeForm):
    """The merchant staff group scopes nothing by itself: only a user with a merchant may have it
    (a user without one sees every merchant's rows)."""

    def clean(self):
        cleaned = super().clean()
        groups = cleaned.get("groups")
        if groups is not None and cleaned.get("merchant") is None and groups.filter(name=MERCHANT_STAFF_GROUP):
            self.add_error("groups", f"The {MERCHANT_STAFF_GROUP} group is for a merchant's staff: set the merchant.")
        return cleaned


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Platform operators manage logins. A user added with a merchant is that merchant's staff and
    gets the merchant staff's permissions (apps.merchants.permissions)."""

    form = StaffUserChangeForm
    fieldsets = DjangoUserAdmin.fieldsets + (("Merchant", {"fields": ("merchant",)}),)
    add_fieldsets = DjangoUserAdmin.add_fieldsets + (("Merchant", {"fields": ("merchant", "is_staff")}),)
    list_display = ("username", "email", "merchant", "is_staff", "is_superuser")
    list_filter = ("is_staff", "is_superuser", "merchant")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if not change and form.instance.merchant_id is not None:
            merchant_staff_grant(user=form.instance)


@admin.register(ApiKey)
class ApiKeyAdmin(TenantAdmin):
    """A new key's secret (created or rolled) is shown once on a page of its own
    (secret_view, see apps.merchants.secret_reveal), never in a message."""

    staff_permissions = ("view", "add", "change")  # change: the name, and the revoke and roll actions
    list_display = ("prefix", "name", "rate_limit", "last_used_at", "revoked_at", "created_at")
    readonly_fields = ("prefix", "last_used_at", "revoked_at", "created_at")
    actions = ("revoke_keys", "roll_key")

    def get_fields(self, request, obj=None):
        fields = ["name", "rate_limit"]
        if admin_tenant(request) is None:
            fields.insert(0, "merchant")
        return fields + (["prefix", "last_used_at", "revoked_at", "created_at"] if obj else [])

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly.append("rate_limit")  # the operator sets rate limits
        if obj is not None and "merchant" not in readonly:
            readonly.append("merchant")
        return readonly

    def get_urls(self):
        secret = path(
            "<path:object_id>/secret/<str:token>/",
            self.admin_site.admin_view(self.secret_view),  # (admin_view: the response is never cached)
            name="merchants_apikey_secret",
        )
        return [secret, *super().get_urls()]

    def _secret_page(self, request, key: ApiKey, secret: str) -> HttpResponse:
        token = secret_hold(secret=secret, key_id=key.pk, user_id=request.user.pk)
        return redirect(reverse("admin:merchants_apikey_secret", args=[key.pk, token]))

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        merchant = admin_tenant(request) or obj.merchant
        key, secret = api_key_create(merchant=merchant, name=obj.name, rate_limit=obj.rate_limit)
        obj.pk, obj.prefix, obj.merchant = key.pk, key.prefix, key.merchant
        obj._state.adding = False
        # Held before the admin's transaction commits: if Redis fails, no key is left without its secret.
        obj._secret_response = self._secret_page(request, key, secret)

    def response_add(self, request, obj, post_url_continue=None):
        secret_response = getattr(obj, "_secret_response", None)
        return secret_response or super().response_add(request, obj, post_url_continue)

    def secret_view(self, request, object_id, token):
        key = self.get_object(request, unquote(object_id))
        if key is None:
            raise Http404("No such API key.")
        if not self.has_view_permission(request, key):
            raise PermissionDenied
        revealed = secret_take(token=token, user_id=request.user.pk)
        secret = revealed.secret if revealed is not None and revealed.key_id == str(key.pk) else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "New API key secret" if secret else "Secret already shown",
            "key": key,
            "secret": secret,
        }
        response = TemplateResponse(
            request, "admin/merchants/apikey/secret.html", context, status=200 if secret else 410
        )
        add_never_cache_headers(response)
        response["Referrer-Policy"] = "no-referrer"  # the URL carries the pad of the held secret
        return response

    @admin.action(description="Revoke the selected keys", permissions=["service_action"])
    def revoke_keys(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

    @admin.action(
        description="Roll the selected key (a new secret; the old one stops working now)",
        permissions=["service_action"],
    )
    def roll_key(self, request, queryset):
        keys = list(queryset[:2])
        if len(keys) != 1:
            self.message_user(request, "Select one key to roll.", messages.ERROR)
            return None
        try:
            key, secret = api_key_roll(key=keys[0])
        except ApiError as exc:
            self.message_user(request, f"{keys[0]}: {exc.message}", messages.ERROR)
            return None
        return self._secret_page(request, key, secret)
