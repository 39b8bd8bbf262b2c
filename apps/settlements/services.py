"""USDC settlements: a transaction hash claimed for an invoice or a payment session, stored
pending at once, then confirmed or failed from what the chain itself says.

Posting (`settlement_create`) checks what it can without the chain: the chain is one of the
mode's, `merchantAddress` is its recipient, `referenceHash` is the platform's for the target
(422 REFERENCE_MISMATCH), `payerAddress` is one of the customer's proven wallet addresses, and
the hash is not held by another settlement (the same claim again is a replay; another target is
409 TRANSACTION_ALREADY_USED, and nothing is written).

Checking (`settlement_check`, a Celery task, again by beat with backoff) reads the chain outside
any database transaction (apps.settlements.reader), then, in one transaction with the
settlement's row locked: confirms it when the transaction succeeded, holds Transfer logs of the
chain's USDC from the payer to the recipient, its block is still canonical and head - block + 1
reaches the required confirmations; the payments service then credits exactly what was
transferred, once per (chain, transaction hash, log index), and applies it to the target first.
A settlement confirmed is never read again, so no later reading (a reorganisation) undoes it; one
whose transaction left the canonical chain before the threshold is pending again."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_address, to_checksum_address

from apps.core.errors import Conflict, FieldError, NotFound, Unprocessable
from apps.core.jobs import enqueue_after_commit
from apps.core.models import violated_constraint
from apps.invoices.models import Invoice
from apps.invoices.services.invoices import invoice_lock, invoice_payment_session, invoice_session_for_link
from apps.payments.chains import USDC, Chain, chain_get, from_base_units, reference_hash
from apps.payments.models import PaymentSession, PaymentSource
from apps.payments.services import Arrival, payment_receive
from apps.settlements.models import Settlement, WalletAddress
from apps.settlements.reader import ChainReadError, read_transaction
from apps.settlements.serializers import settlement_data
from apps.webhooks.outbox import publish

logger = logging.getLogger(__name__)

# Failures after which the hash may be claimed again: no mined receipt, or a transfer from
# another payer (the claim was someone else's, who may still claim it).
RELEASES_HASH = {Settlement.FailureReason.NOT_FOUND_IN_TIME, Settlement.FailureReason.WRONG_PAYER}


# --- wallet addresses ---------------------------------------------------------------------------


def wallet_address_message(*, merchant, customer, address: str) -> str:
    return f"Pay {merchant.name} from {address} as customer {customer.id}"


def wallet_address_add(*, merchant, customer, address: str, signature: str) -> tuple[WalletAddress, bool]:
    """Record `address` as the customer's once its key signed the contract's message (EIP-191
    personal_sign). Returns (row, created); the same address again for the same customer is
    the row already there; for another customer of the mode, 409 WALLET_ADDRESS_TAKEN."""
    if not is_address(address):
        raise FieldError("address", "must be an Ethereum address (0x + 40 hex)", code="INVALID_ADDRESS")
    message = wallet_address_message(merchant=merchant, customer=customer, address=address)
    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=signature)
    except Exception:  # eth-account raises several kinds for a malformed signature
        raise FieldError(
            "signature", "must be a 65-byte EIP-191 personal_sign signature, 0x + 130 hex", code="INVALID_SIGNATURE"
        ) from None
    checksummed = to_checksum_address(address)
    if signer.lower() != checksummed.lower():
        raise Unprocessable(
            f"The signature is not by {checksummed} (it was made by {signer}): sign the message {message!r} "
            "with the key of the address being added.",
            code="SIGNATURE_MISMATCH",
            details={"message": message},
        )
    existing = WalletAddress.objects.filter(merchant=merchant, address=checksummed).first()
    if existing is None:
        try:
            with transaction.atomic():
                return (
                    WalletAddress.objects.create(
                        merchant=merchant, customer=customer, address=checksummed, signature=signature
                    ),
                    True,
                )
        except IntegrityError as exc:
            if violated_constraint(exc) != "wallet_address_one_customer_per_mode":
                raise
        existing = WalletAddress.objects.get(merchant=merchant, address=checksummed)
    if existing.customer_id != customer.id:
        raise Conflict(
            f"{checksummed} already belongs to another customer; an address pays for one customer per mode.",
            code="WALLET_ADDRESS_TAKEN",
        )
    return existing, False


def wallet_address_remove(*, merchant, customer, address: str) -> WalletAddress:
    """Forget one of the customer's addresses (it proves no payer from now on); the row as it was."""
    found = None
    if is_address(address):
        found = WalletAddress.objects.filter(
            merchant=merchant, customer=customer, address=to_checksum_address(address)
        ).first()
    if found is None:
        raise NotFound(f"Customer {customer.id} has no wallet address {address}.", code="WALLET_ADDRESS_NOT_FOUND")
    removed_id = found.id
    found.delete()
    found.id = removed_id  # (the answer names the row that was removed)
    return found


# --- posting a settlement -----------------------------------------------------------------------


def _normalized_hash(value: str, field: str) -> str:
    text = value.lower()
    if len(text) != 66 or not text.startswith("0x") or any(c not in "0123456789abcdef" for c in text[2:]):
        raise FieldError(field, "must be 0x followed by 64 hex digits", code="INVALID_HASH")
    return text


def _address(value: str, field: str) -> str:
    if not is_address(value):
        raise FieldError(field, "must be an Ethereum address (0x + 40 hex)", code="INVALID_ADDRESS")
    return to_checksum_address(value)


def _replay_or_conflict(existing: Settlement, *, merchant, invoice_id, session_id, payer: str) -> Settlement:
    same = (
        existing.merchant_id == merchant.id
        and existing.payer_address == payer
        and (
            (invoice_id is not None and existing.invoice_id == invoice_id)
            or (invoice_id is None and existing.session_id == session_id and existing.invoice_id is None)
        )
    )
    if not same:
        raise Conflict(
            f"Transaction {existing.transaction_hash} was already claimed on {existing.chain} for another payment; "
            "a transaction pays once.",
            code="TRANSACTION_ALREADY_USED",
        )
    return existing


def settlement_create(
    *,
    merchant,
    chain_name: str,
    transaction_hash: str,
    reference: str,
    payer_address: str,
    merchant_address: str,
    invoice_id=None,
    session_id=None,
) -> tuple[Settlement, bool]:
    """Store the claim pending (see the module) and queue its check. Returns (settlement,
    created): created False is a replay of the same claim (its current state)."""
    if (invoice_id is None) == (session_id is None):
        raise FieldError("invoiceId", "give exactly one of invoiceId and paymentSessionId", code="ONE_TARGET")
    tx_hash = _normalized_hash(transaction_hash, "transactionHash")
    reference = _normalized_hash(reference, "referenceHash")
    payer = _address(payer_address, "payerAddress")
    recipient = _address(merchant_address, "merchantAddress")
    chain = chain_get(livemode=merchant.livemode, name=chain_name)
    if chain is None:
        raise Unprocessable(
            f"No chain {chain_name!r} is configured for this mode: GET /v0/chains lists those that are.",
            code="UNKNOWN_CHAIN",
        )
    if recipient != chain.recipient:
        raise Unprocessable(
            f"merchantAddress must be {chain.recipient}, the platform's collection address on {chain.name}.",
            code="MERCHANT_ADDRESS_MISMATCH",
        )
    existing = Settlement.objects.filter(chain_id=chain.chain_id, transaction_hash=tx_hash, holds_hash=True).first()
    if existing is not None:
        return _replay_or_conflict(
            existing, merchant=merchant, invoice_id=invoice_id, session_id=session_id, payer=payer
        ), False
    with transaction.atomic():
        if invoice_id is not None:
            invoice = invoice_lock(merchant=merchant, invoice_id=invoice_id)
            target_id, customer, currency = invoice.id, invoice.customer, invoice.currency
        else:
            session = (
                PaymentSession.objects.select_for_update(of=("self",))
                .select_related("customer")
                .filter(merchant=merchant, pk=session_id)
                .first()
            )
            if session is None:
                raise NotFound(f"No payment session {session_id}.", code="PAYMENT_SESSION_NOT_FOUND")
            target_id, customer, currency = session.id, session.customer, session.currency
        if reference != reference_hash(target_id):
            raise Unprocessable(
                f"referenceHash is not the platform's for {target_id}: it is keccak-256 of the id's 16 bytes, "
                f"{reference_hash(target_id)} (the target's usdc block shows it).",
                code="REFERENCE_MISMATCH",
            )
        if currency != USDC:
            raise Unprocessable(f"{target_id} is in {currency}; settlements pay in USDC.", code="NOT_USDC")
        if not WalletAddress.objects.filter(merchant=merchant, customer=customer, address=payer).exists():
            raise Unprocessable(
                f"{payer} is not a proven wallet address of customer {customer.id}: add it first with "
                f"POST /v0/customers/{customer.id}/walletAddresses (signed by its key).",
                code="PAYER_NOT_PROVEN",
            )
        if invoice_id is not None:
            if invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE):
                session = invoice_payment_session(invoice)
            elif invoice.payment_session is not None:
                session = invoice.payment_session  # (paid or void meanwhile: what arrives stays on the wallet)
            else:
                raise Conflict(
                    f"Invoice {invoice.id} is {invoice.status}; it takes no payment.", code="INVOICE_NOT_OPEN"
                )
        try:
            with transaction.atomic():
                settlement = Settlement.objects.create(
                    merchant=merchant,
                    chain=chain.name,
                    chain_id=chain.chain_id,
                    transaction_hash=tx_hash,
                    reference_hash=reference,
                    payer_address=payer,
                    merchant_address=recipient,
                    customer=customer,
                    invoice_id=invoice_id,
                    session=session,
                    required_confirmations=chain.required_confirmations,
                    next_check_at=timezone.now(),
                )
        except IntegrityError as exc:
            if violated_constraint(exc) != "settlement_hash_once_per_chain":
                raise
            settlement = None
        if settlement is not None:
            from apps.settlements.tasks import check_settlement

            settlement_id = settlement.id
            # (checked at once by a worker; beat's re-check finds it due now if the broker is out of reach)
            enqueue_after_commit(check_settlement, str(settlement_id), caught_up_by="recheck_pending_settlements")
            return settlement, True
    # claimed meanwhile by a concurrent request
    existing = Settlement.objects.get(chain_id=chain.chain_id, transaction_hash=tx_hash, holds_hash=True)
    return _replay_or_conflict(
        existing, merchant=merchant, invoice_id=invoice_id, session_id=session_id, payer=payer
    ), False


# --- checking it against the chain --------------------------------------------------------------


def _backoff(checks: int) -> timedelta:
    seconds = min(settings.SETTLEMENT_RECHECK_SECONDS * (2 ** min(checks, 20)), settings.SETTLEMENT_RECHECK_MAX_SECONDS)
    return timedelta(seconds=seconds)


def _still_pending(settlement: Settlement, *, confirmations: int, block_number=None, block_hash: str = "") -> None:
    """Record what was seen and when to look again (only while it is pending: a concurrent
    check may have confirmed it meanwhile)."""
    now = timezone.now()
    Settlement.objects.filter(pk=settlement.pk, status=Settlement.Status.PENDING).update(
        confirmations=confirmations,
        block_number=block_number,
        block_hash=block_hash,
        checks=settlement.checks + 1,
        last_checked_at=now,
        next_check_at=now + _backoff(settlement.checks),
        updated_at=now,
    )


def _fail(settlement_id, reason: str) -> Settlement:
    with transaction.atomic():
        settlement = Settlement.objects.select_for_update(of=("self",)).select_related("merchant").get(pk=settlement_id)
        if settlement.status != Settlement.Status.PENDING:
            return settlement
        now = timezone.now()
        settlement.status = Settlement.Status.FAILED
        settlement.failure_reason = reason
        settlement.holds_hash = reason not in RELEASES_HASH
        settlement.failed_at = settlement.last_checked_at = now
        settlement.save(
            update_fields=["status", "failure_reason", "holds_hash", "failed_at", "last_checked_at", "updated_at"]
        )
        publish(merchant=settlement.merchant, type="settlement.failed", data=settlement_data(settlement))
    return settlement


def _confirm(settlement_id, chain: Chain, reading, transfers) -> Settlement:
    with transaction.atomic():
        settlement = (
            Settlement.objects.select_for_update(of=("self",))
            .select_related("merchant", "session")
            .get(pk=settlement_id)
        )
        if settlement.status != Settlement.Status.PENDING:
            return settlement  # confirmed (or failed) by a concurrent check: nothing more moves
        session = settlement.session
        if settlement.invoice_id is not None:
            # the invoice's live session now (replaced if it expired); none once it takes no
            # payment, and then the money stays on the wallet through the session it was posted for
            session = invoice_session_for_link(session=session) or session
        payments = []
        for transfer in transfers:
            received = payment_receive(
                session_id=session.id,
                arrival=Arrival(
                    source=PaymentSource.USDC,
                    amount=from_base_units(transfer.value),
                    currency=USDC,
                    external_reference=f"{chain.name}:{settlement.transaction_hash}:{transfer.log_index}",
                    clearing=chain.clearing_source,
                ),
                merchant=settlement.merchant,
            )
            payments.append(received.payment)
        total = sum(transfer.value for transfer in transfers)
        now = timezone.now()
        settlement.status = Settlement.Status.CONFIRMED
        settlement.confirmations = reading.confirmations
        settlement.block_number = reading.block_number
        settlement.block_hash = reading.block_hash
        settlement.amount_base_units = total
        settlement.amount = from_base_units(total)
        settlement.log_indexes = [transfer.log_index for transfer in transfers]
        settlement.payment = payments[0]
        settlement.confirmed_at = settlement.last_checked_at = now
        settlement.checks += 1
        settlement.save()
        publish(merchant=settlement.merchant, type="settlement.confirmed", data=settlement_data(settlement))
    return settlement


def settlement_check(*, settlement_id) -> Settlement:
    """Read the settlement's transaction from its chain (outside any database transaction) and
    confirm it, fail it, or leave it pending until the next check (see the module)."""
    from apps.settlements.reader import judge

    settlement = Settlement.objects.select_related("merchant").get(pk=settlement_id)
    if settlement.status != Settlement.Status.PENDING:
        return settlement
    chain = chain_get(livemode=settlement.merchant.livemode, name=settlement.chain)
    if chain is None or chain.chain_id != settlement.chain_id:
        logger.warning(
            "settlement %s: chain %s is no longer configured; checked again later", settlement.id, settlement.chain
        )
        _still_pending(settlement, confirmations=settlement.confirmations)
        return settlement
    try:
        reading = read_transaction(chain, settlement.transaction_hash, timeout=settings.CHAIN_RPC_TIMEOUT_SECONDS)
    except ChainReadError as exc:
        logger.warning("settlement %s: %s; checked again later", settlement.id, exc)
        _still_pending(settlement, confirmations=settlement.confirmations)
        return settlement
    if not reading.mined:
        if timezone.now() - settlement.created_at >= timedelta(seconds=settings.SETTLEMENT_NOT_FOUND_SECONDS):
            return _fail(settlement.id, Settlement.FailureReason.NOT_FOUND_IN_TIME)
        # not mined yet, or its block left the canonical chain (a reorganisation): pending again
        _still_pending(settlement, confirmations=0)
        return Settlement.objects.get(pk=settlement.pk)
    transfers, reason = judge(reading, chain=chain, payer=settlement.payer_address)
    if reason:
        return _fail(settlement.id, reason)
    if reading.confirmations < settlement.required_confirmations:
        _still_pending(
            settlement,
            confirmations=reading.confirmations,
            block_number=reading.block_number,
            block_hash=reading.block_hash,
        )
        return Settlement.objects.get(pk=settlement.pk)
    return _confirm(settlement.id, chain, reading, transfers)


def settlements_due(*, limit: int = 500) -> list:
    """The ids of pending settlements whose next check is due (beat queues a check of each),
    pushed back meanwhile."""
    now = timezone.now()
    due = list(
        Settlement.objects.filter(status=Settlement.Status.PENDING, next_check_at__lte=now)
        .order_by("next_check_at")
        .values_list("id", flat=True)[:limit]
    )
    # not queued again by the next beat while this check waits or runs (the check sets the next time)
    Settlement.objects.filter(pk__in=due, status=Settlement.Status.PENDING).update(
        next_check_at=now + timedelta(seconds=settings.SETTLEMENT_RECHECK_MAX_SECONDS)
    )
    return due
