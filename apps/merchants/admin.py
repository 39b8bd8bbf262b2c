from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm

from apps.merchants.admin_base import TenantAdmin, admin_tenant
from apps.merchants.models import ApiKey, Merchant, User
from apps.merchants.permissions import MERCHANT_STAFF_GROUP
from apps.merchants.services import api_key_create, api_key_revoke, merchant_create, merchant_staff_grant


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
    staff_permissions = ("view", "add", "change")  # change: the name, and the revoke action
    list_display = ("prefix", "name", "rate_limit", "last_used_at", "revoked_at", "created_at")
    readonly_fields = ("prefix", "last_used_at", "revoked_at", "created_at")
    actions = ("revoke_keys",)

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

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        merchant = admin_tenant(request) or obj.merchant
        key, secret = api_key_create(merchant=merchant, name=obj.name, rate_limit=obj.rate_limit)
        obj.pk, obj.prefix, obj.merchant = key.pk, key.prefix, key.merchant
        obj._state.adding = False
        messages.warning(request, f"Copy this secret key now; it is not stored and will not be shown again: {secret}")

    @admin.action(description="Revoke the selected keys", permissions=["service_action"])
    def revoke_keys(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
