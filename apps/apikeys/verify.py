"""Verify: "may this key make this call?" in one Redis round trip, without the database.

Redis holds what verify needs (written when a key is created, and loaded from the database
only when missing):

- `apikey:<secret hash>`: the key's id, merchant, customer, subscription and status (a revoked
  key's record says so at once, whatever web process answers next; so does a key whose
  subscription ended);
- `apisub:<subscription>`: its tier, per-second limit, monthly quota and the quota month
  [start, end) in milliseconds, with the generation it was read at; a change of the subscription
  bumps `apisubgen:<subscription>` after its commit, so a record read before the change is
  refused by the script and read again;
- `apirate:<subscription>:<second>` and `apiquota:<subscription>:<quota month start>`: the
  counts, and the stream `apikeys:counted`, where each counted call is appended, atomically
  with its count, before the answer (drained into usage events by `tasks.drain_counted_calls`).

The Lua script decides in one atomic step (so 200 concurrent calls with 100 left give exactly
100 VALID): NOT_FOUND (no such key for this merchant and mode), REVOKED, STALE or MISS (the
caller loads the records and asks again), RATE_LIMITED (the calendar second of the server's
clock, UTC, already had `rateLimit` VALID answers), QUOTA_EXCEEDED (the quota month cannot take
`cost` more), else VALID, counting `cost` (a cost of 0 checks without counting against the
quota; every VALID answer counts against the second's rate, so that no second has more VALID
answers than `rateLimit`). A quota month's count missing from Redis (its month begun, or the
count lost) is MISS too: the load seeds it from the recorded usage before any call is counted.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from apps.apikeys.models import CustomerApiKey
from apps.apikeys.tiers import tier_of
from apps.core.redis import get_redis
from apps.core.secrets import hash_secret
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import period_at

STREAM = "apikeys:counted"

_SCRIPT = """
local key = redis.call('HMGET', KEYS[1], 'id', 'merchant', 'customer', 'sub', 'status')
if not key[1] then return 'MISS' end
if key[2] ~= ARGV[1] then return 'NOT_FOUND' end
local sub = key[4]
local lookup = 'MISS\t' .. key[1] .. '\t' .. key[3] .. '\t' .. sub
local tier = redis.call('HMGET', 'apisub:' .. sub, 'gen', 'tier', 'rate', 'quota', 'pstart', 'pend', 'metric', 'ended')
if not tier[1] then return lookup end
local gen = redis.call('GET', 'apisubgen:' .. sub) or '0'
if tier[1] ~= gen then return lookup end
local now = tonumber(ARGV[2])
local pstart = tonumber(tier[5])
local pend = tonumber(tier[6])
if now < pstart or now >= pend then return 'STALE' .. string.sub(lookup, 5) end
local function answer(code, used)
  return table.concat({code, key[1], key[3], sub, tier[3], tier[4], tier[6], used, tier[2]}, '\t')
end
local quota = tonumber(tier[4])
local qkey = 'apiquota:' .. sub .. ':' .. tier[5]
local counted = redis.call('GET', qkey)
if not counted then return lookup end
local used = tonumber(counted)
if key[5] == 'revoked' or tier[8] == '1' then return answer('REVOKED', '') end
local cost = tonumber(ARGV[3])
local second = math.floor(now / 1000)
local rkey = 'apirate:' .. sub .. ':' .. second
local rate = tonumber(tier[3])
local calls = tonumber(redis.call('GET', rkey) or '0')
if calls >= rate then return answer('RATE_LIMITED', string.format('%d', used)) end
if quota >= 0 and used + math.max(cost, 1) > quota then
  return answer('QUOTA_EXCEEDED', string.format('%d', used))
end
redis.call('INCR', rkey)
redis.call('PEXPIRE', rkey, 2000)
if cost > 0 then
  used = redis.call('INCRBY', qkey, cost)
  redis.call('PEXPIRE', qkey, pend - now + 3024000000)
  redis.call('XADD', KEYS[2], '*', 'm', key[2], 'c', key[3], 's', sub, 'k', key[1], 'q', cost, 't', ARGV[2], 'p', tier[7])
end
return answer('VALID', string.format('%d', used))
"""


@dataclass(frozen=True)
class Answer:
    code: str
    key_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    tier: str | None = None
    rate_limit: int | None = None
    monthly_limit: int | None = None
    quota_end_ms: int | None = None
    used: int | None = None

    @property
    def valid(self) -> bool:
        return self.code == "VALID"


_script = None


def _decide(secret_hash: str, merchant_pk: str, now_ms: int, cost: int) -> str:
    """The script's answer: one tab-separated string (one bulk reply is parsed in a fraction of
    the time of an array of nine), the tier's code last (it may hold any character)."""
    global _script
    if _script is None:
        _script = get_redis().register_script(_SCRIPT)
    return _text(_script(keys=[f"apikey:{secret_hash}", STREAM], args=[merchant_pk, now_ms, cost]))


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _answer(result: str) -> Answer:
    values = result.split("\t", 8)
    code = values[0]
    if code in ("NOT_FOUND", "MISS", "STALE"):
        return Answer(code, *values[1:4])
    key_id, customer_id, subscription_id, rate, quota, pend, used, tier = values[1:9]
    used = int(used) if used else None
    return Answer(
        code,
        key_id,
        customer_id,
        subscription_id,
        tier,
        int(rate),
        None if int(quota) < 0 else int(quota),
        int(pend),
        used,
    )


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def key_record_write(key: CustomerApiKey, *, overwrite: bool) -> None:
    """The key's record in Redis; `overwrite` False writes only where none is (a load must not
    undo a revocation written since it read the row)."""
    fields = {
        "id": str(key.id),
        "merchant": str(key.merchant_id),
        "customer": str(key.customer_id),
        "sub": str(key.subscription_id),
        "status": "revoked" if key.revoked_at else "active",
    }
    client = get_redis()
    name = f"apikey:{key.secret_hash}"
    if overwrite or client.hsetnx(name, "id", fields["id"]):
        client.hset(name, mapping=fields)


def subscription_record_load(subscription_id, now: datetime) -> None:
    """The subscription's tier record, read from the database at the current generation; its
    quota count seeded from the recorded usage when Redis has none (after a loss of Redis data)."""
    client = get_redis()
    generation = _text(client.get(f"apisubgen:{subscription_id}")) or "0"
    subscription = Subscription.objects.select_related("plan").get(pk=subscription_id)
    tier = tier_of(subscription.plan)
    start, end = period_at(subscription.started_at, "monthly", max(now, subscription.started_at))
    client.hset(
        f"apisub:{subscription_id}",
        mapping={
            "gen": generation,
            "tier": tier.code,
            "rate": tier.rate_limit,
            "quota": -1 if tier.monthly_limit is None else tier.monthly_limit,
            "pstart": _ms(start),
            "pend": _ms(end),
            "metric": str(tier.query_price.id),
            "ended": "1" if subscription.status == Subscription.Status.TERMINATED else "0",
        },
    )
    quota_key = f"apiquota:{subscription_id}:{_ms(start)}"
    if not client.exists(quota_key):
        from apps.apikeys.selectors import counted_calls

        # (kept 35 days past the month, counted from the verify's clock, not Redis's)
        keep = _ms(end) - _ms(now) + 3_024_000_000
        client.set(quota_key, counted_calls(subscription=subscription, start=start, end=end), nx=True, px=keep)


def subscription_changed(subscription_id) -> None:
    """After a change of the subscription commits: its tier record is read again at the next
    verify (every web process, at once)."""
    client = get_redis()
    client.incr(f"apisubgen:{subscription_id}")
    client.delete(f"apisub:{subscription_id}")


def verify(*, merchant, secret: str, cost: int, now: datetime | None = None) -> Answer:
    """The answer to one call of `secret`'s key costing `cost` (see the module)."""
    now = now or datetime.now(UTC)
    secret_hash = hash_secret(secret)
    now_ms = _ms(now)
    for _ in range(3):
        answer = _answer(_decide(secret_hash, str(merchant.pk), now_ms, cost))
        if answer.code not in ("MISS", "STALE"):
            return answer
        if answer.key_id is None:
            key = CustomerApiKey.objects.filter(secret_hash=secret_hash).first()
            if key is None or key.merchant_id != merchant.pk:
                return Answer("NOT_FOUND")
            key_record_write(key, overwrite=False)
            continue
        subscription_record_load(answer.subscription_id, now)
    raise RuntimeError("verify: the records in Redis did not settle after three loads")


def reset_at(answer: Answer, now: datetime) -> str | None:
    if answer.code == "RATE_LIMITED":
        return (now.replace(microsecond=0) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    if answer.quota_end_ms is None:
        return None
    return datetime.fromtimestamp(answer.quota_end_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def on_commit_subscription_changed(subscription_id) -> None:
    """Invalidate now (this transaction's own later verifies) and again after the commit (a
    verify elsewhere that read the row before the commit wrote a record the second bump
    refuses)."""
    subscription_changed(subscription_id)
    transaction.on_commit(lambda: subscription_changed(subscription_id))
