"""The checkout's USDC path: what to send (the `usdc` block, its EIP-681 URI drawn as a QR code by
segno) and the page's JSON actions, which call the same services as the API:

    POST /checkout/{id}/usdc/proof        {"address", "signature"} -> the address proven for the
                                          session's customer (EIP-191 personal_sign of the
                                          contract's message, as POST /v0/customers/{id}/walletAddresses)
    POST /checkout/{id}/usdc/settlement   {"transactionHash", "payerAddress"} -> the settlement,
                                          pending (as POST /v0/settlements, for the page's target)
    GET  /checkout/{id}/usdc/settlements/{settlementId}  -> its status, polled by the page

The page's target is the invoice behind an invoice's link (its reference is the one printed on
the invoice's PDF), else the session itself. Whether anything is paid is decided by the chain
through the settlements' check, never by what the browser reports."""

import segno
from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from apps.checkout.actions import checkout_session, error_response, json_body, pending_session
from apps.core.errors import ApiError, BadRequest, Unprocessable
from apps.core.money import format_amount
from apps.invoices.models import Invoice
from apps.invoices.serializers import invoice_usdc
from apps.payments.chains import chain_get, from_base_units, usdc_unavailable_reason
from apps.payments.models import PaymentSession
from apps.payments.serializers import session_status, session_usdc
from apps.settlements.models import Settlement
from apps.settlements.services import settlement_create, wallet_address_add, wallet_address_message

# What the payer is told when a settlement failed (the contract's failureReason values).
FAILURE_MESSAGES = {
    Settlement.FailureReason.REVERTED: "The transaction failed on chain (reverted), so nothing was transferred. "
    "Send the transfer again.",
    Settlement.FailureReason.NOT_FOUND_IN_TIME: "The chain never showed this transaction. Check the hash, or send "
    "the transfer again.",
    Settlement.FailureReason.NO_MATCHING_TRANSFER: "This transaction holds no USDC transfer to the address shown.",
    Settlement.FailureReason.WRONG_TOKEN: "This transaction sent another token, not the USDC contract shown.",
    Settlement.FailureReason.WRONG_RECIPIENT: "This transaction sent USDC to another address, not the one shown.",
    Settlement.FailureReason.WRONG_PAYER: "The transfer in this transaction came from another address than the one "
    "given: give the address that sent it.",
}
ADDRESS_PLACEHOLDER = "{address}"


def usdc_target(session: PaymentSession) -> tuple[dict, Invoice | None] | None:
    """(the `usdc` block the page shows, the invoice it pays or None for the session itself), or
    None when nothing can be paid in USDC here."""
    if session.purpose == PaymentSession.Purpose.INVOICE and session.invoice_id is not None:
        invoice = (
            Invoice.objects.select_related("merchant").filter(pk=session.invoice_id, merchant=session.merchant).first()
        )
        block = invoice_usdc(invoice) if invoice is not None else None
        return (block, invoice) if block else None
    block = session_usdc(session)
    return (block, None) if block else None


def transfer_uri(block: dict) -> str:
    """The EIP-681 URI of the ERC-20 transfer that pays `block`."""
    return (
        f"ethereum:{block['token']}@{block['chainId']}/transfer?address={block['recipient']}&uint256={block['amount']}"
    )


def qr_svg(text: str) -> str:
    """`text` as a QR code, an inline SVG element (no script, no style attribute: the page's CSP holds)."""
    return segno.make(text, error="m").svg_inline(
        scale=4, dark="#000", light="#fff", title="QR code of the USDC transfer", svgclass="qr-code", lineclass=None
    )


def _settlements_of(session: PaymentSession, invoice_id=None):
    queryset = Settlement.objects.select_related("merchant").filter(merchant=session.merchant)
    if invoice_id is not None:
        return queryset.filter(invoice_id=invoice_id)
    return queryset.filter(session=session, invoice_id=None)


def usdc_context(session: PaymentSession) -> dict | None:
    """What the page's USDC section shows, or None when the session takes no USDC."""
    target = usdc_target(session)
    if target is None:
        return None
    block, invoice = target
    chain = chain_get(livemode=session.merchant.livemode, name=block["chain"])
    uri = transfer_uri(block)
    pending = (
        _settlements_of(session, invoice.id if invoice else None)
        .filter(status=Settlement.Status.PENDING)
        .order_by("-created_at", "-id")
        .first()
    )
    return {
        "block": block,
        "amount": format_amount(from_base_units(int(block["amount"])), "USDC"),
        "required_confirmations": chain.required_confirmations if chain else None,
        "uri": uri,
        "qr_svg": qr_svg(uri),
        "proof_message": wallet_address_message(
            merchant=session.merchant, customer=session.customer, address=ADDRESS_PLACEHOLDER
        ),
        "pending": pending,
    }


def settlement_status_data(session: PaymentSession, settlement: Settlement) -> dict:
    """A settlement as the page's status line shows it, and where to go once it is confirmed."""
    session.refresh_from_db()
    confirmed = settlement.status == Settlement.Status.CONFIRMED
    if settlement.status == Settlement.Status.PENDING:
        message = (
            f"Waiting for confirmations: {settlement.confirmations} of {settlement.required_confirmations}."
            if settlement.confirmations
            else "Waiting for the transaction to be mined."
        )
    elif confirmed:
        message = f"Confirmed: {format_amount(settlement.amount, 'USDC')} USDC received."
    else:
        message = FAILURE_MESSAGES.get(settlement.failure_reason, f"Failed ({settlement.failure_reason}).")
    paid = session_status(session) == PaymentSession.Status.PAID
    redirect = None
    if confirmed:
        redirect = session.success_url if paid and session.success_url else f"/checkout/{session.id}"
    return {
        "id": str(settlement.id),
        "status": settlement.status,
        "transactionHash": settlement.transaction_hash,
        "payerAddress": settlement.payer_address,
        "confirmations": settlement.confirmations,
        "requiredConfirmations": settlement.required_confirmations,
        "amount": None if settlement.amount is None else format_amount(settlement.amount, "USDC"),
        "failureReason": settlement.failure_reason or None,
        "message": message,
        "paymentSessionStatus": session_status(session),
        "redirect": redirect,
    }


def _string(body: dict, field: str, *, max_length: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} is required.", code="FIELD_REQUIRED", details={"field": field})
    if len(value) > max_length:
        raise BadRequest(f"{field} is longer than {max_length} characters.", code="FIELD_TOO_LONG")
    return value.strip()


def _usdc_target_or_error(session: PaymentSession) -> tuple[dict, Invoice | None]:
    target = usdc_target(session)
    if target is None:
        reason = usdc_unavailable_reason(livemode=session.merchant.livemode) or "nothing is due in USDC here."
        raise Unprocessable(f"USDC cannot be paid on this page: {reason}", code="USDC_UNAVAILABLE")
    return target


@require_POST
def checkout_usdc_proof(request, session_id):
    """Prove an address for the session's customer (its key's personal_sign of the contract's message)."""
    try:
        body = json_body(request)
        address = _string(body, "address", max_length=42)
        signature = _string(body, "signature", max_length=200)
        session = pending_session(session_id)
        _usdc_target_or_error(session)
        row, created = wallet_address_add(
            merchant=session.merchant, customer=session.customer, address=address, signature=signature
        )
    except ApiError as exc:
        return error_response(exc)
    return JsonResponse({"address": row.address, "proven": True}, status=201 if created else 200)


@require_POST
def checkout_usdc_settle(request, session_id):
    """The pasted (or browser-wallet) transaction hash claimed for the page's target."""
    try:
        body = json_body(request)
        transaction_hash = _string(body, "transactionHash", max_length=66)
        payer = _string(body, "payerAddress", max_length=42)
        session = pending_session(session_id)
        block, invoice = _usdc_target_or_error(session)
        try:
            settlement, created = settlement_create(
                merchant=session.merchant,
                chain_name=block["chain"],
                transaction_hash=transaction_hash,
                reference=block["referenceHash"],
                payer_address=payer,
                merchant_address=block["recipient"],
                invoice_id=invoice.id if invoice else None,
                session_id=None if invoice else session.id,
            )
        except ApiError as exc:
            raise _for_the_payer(exc, session=session, payer=payer) from None
    except ApiError as exc:
        return error_response(exc)
    settlement = Settlement.objects.select_related("merchant").get(pk=settlement.pk)
    return JsonResponse(settlement_status_data(session, settlement), status=201 if created else 200)


def _for_the_payer(exc: ApiError, *, session: PaymentSession, payer: str) -> ApiError:
    """The service's error in words for the payer on this page (same status and code)."""
    if exc.code == "PAYER_NOT_PROVEN":
        message = wallet_address_message(merchant=session.merchant, customer=session.customer, address=payer)
        exc.message = (
            f"{payer} is not yet proven to be yours. Sign the message below with that address's key (your "
            "wallet's \u201csign message\u201d, EIP-191 personal_sign) and paste the signature."
        )
        exc.details = {"address": payer, "message": message}
    elif exc.code == "TRANSACTION_ALREADY_USED":
        exc.message = (
            "This transaction was already claimed for another payment; a transaction pays once. If that claim "
            "is not yours, it fails once the chain shows who sent the transfer: try again in a minute."
        )
    elif exc.code == "REFERENCE_MISMATCH":
        exc.message = "This payment's reference changed; reload the page and try again."
    return exc


@require_GET
def checkout_usdc_status(request, session_id, settlement_id):
    """A settlement of the page's target (and no other), as the page polls it."""
    session = checkout_session(session_id)
    invoice_id = session.invoice_id if session.purpose == PaymentSession.Purpose.INVOICE else None
    settlement = _settlements_of(session, invoice_id).filter(pk=settlement_id).first()
    if settlement is None:
        raise Http404("No such settlement.")
    response = JsonResponse(settlement_status_data(session, settlement))
    response["Cache-Control"] = "no-store"
    return response
