"""The embedded Redis that `make run` and `make test` start when REDIS_URL does not answer is
append-only (appendfsync everysec) in the directory it is given (issue 15: verify's counts live
there first), and the note for a Redis at REDIS_URL that is not."""

import contextlib

import redis

from billing_platform import devservers


def test_the_embedded_redis_is_append_only_in_its_own_directory(tmp_path):
    url = devservers.start_embedded_redis(tmp_path / "redis")
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync"), **client.config_get("dir")}
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
        assert config["dir"] == str(tmp_path / "redis")
        client.set("counted", 1)
        assert client.info("persistence")["aof_enabled"] == 1
        assert devservers.redis_persistence_note(url) is None
        client.config_set("appendonly", "no")
        note = devservers.redis_persistence_note(url)
        assert note is not None and "appendonly no" in note
    finally:
        with contextlib.suppress(redis.RedisError):
            client.shutdown(nosave=True)
