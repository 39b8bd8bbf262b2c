"""Running one action in many threads at once, each with its own database connection."""

import threading

from django.db import connection


def run_at_once(count, action):
    """Run `action(index)` in `count` threads released together; returns the results by index
    (an exception an action raised is its result: the caller asserts on it)."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def worker(index):
        try:
            barrier.wait()
            results[index] = action(index)
        except Exception as error:  # noqa: BLE001 -- a failure is asserted on by the caller
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
