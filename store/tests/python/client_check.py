"""The Python etcd3 client against one endpoint: KV, txn, watch, leases and locks.

Usage: python3 client_check.py HOST PORT. Exits non-zero on the first failure.
"""
import sys
import threading

import etcd3


def main(host, port):
    client = etcd3.client(host=host, port=int(port), timeout=10)
    client.put("py/a", "1")
    value, meta = client.get("py/a")
    assert value == b"1", value
    assert meta.version == 1, meta.version

    ok, _ = client.transaction(
        compare=[client.transactions.value("py/a") == "1"],
        success=[client.transactions.put("py/b", "2")],
        failure=[],
    )
    assert ok, "txn compare should succeed"
    assert client.get("py/b")[0] == b"2"

    events = []
    done = threading.Event()

    def on_event(response):
        events.extend(response.events)
        if len(events) >= 2:
            done.set()

    watch_id = client.add_watch_prefix_callback("py/w/", on_event)
    client.put("py/w/1", "x")
    client.delete("py/w/1")
    assert done.wait(10), f"watch events: {events}"
    client.cancel_watch(watch_id)
    assert isinstance(events[0], etcd3.events.PutEvent), events
    assert isinstance(events[1], etcd3.events.DeleteEvent), events

    lease = client.lease(30)
    client.put("py/leased", "v", lease=lease)
    assert lease.remaining_ttl > 0
    assert [key for key in lease.keys] == [b"py/leased"], lease.keys
    lease.refresh()
    lease.revoke()
    assert client.get("py/leased")[0] is None

    with client.lock("py-lock", ttl=10) as lock:
        assert lock.is_acquired()
        other = client.lock("py-lock", ttl=10)
        assert not other.acquire(timeout=1), "a held lock is exclusive"
    assert client.lock("py-lock", ttl=10).acquire(timeout=5)

    members = list(client.members)
    assert len(members) >= 1, members
    print("python etcd3 client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
