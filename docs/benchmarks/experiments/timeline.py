#!/usr/bin/env python3
"""Median timeline of one put across the members, from write-timeline.patch's
`XT <unix ns> <pid> <event> <n>` lines on each member's stderr.

usage: timeline.py SINCE_NS LOG...   (one log per member; one client writing)
Times are microseconds after the put reached the member the client wrote to.
Roles: E = that member, L = the leader (E too when the client wrote to it), O = the others.
"""
import collections
import statistics
import sys

since = int(sys.argv[1])
events = []
for member, path in enumerate(sys.argv[2:]):
    for line in open(path, errors="replace"):
        if line.startswith("XT "):
            _, ns, _, name, n = line.split()
            if int(ns) >= since:
                events.append((int(ns), member, name, int(n)))
events.sort()
busiest = lambda name: collections.Counter(m for _, m, e, _ in events if e == name).most_common(1)[0][0]
entry, leader = busiest("grpc-put"), busiest("client-write")
role = lambda m: "L" if m == leader else ("E" if m == entry else "O")
puts, current = [], None
for event in events:
    if event[2] == "grpc-put" and event[1] == entry:
        current = [event]
        puts.append(current)
    elif current is not None:
        current.append(event)
offsets = collections.defaultdict(list)
for put in puts[5:-5]:
    start, seen = put[0][0], collections.Counter()
    for ns, member, name, _ in put:
        key = f"{role(member)}:{name}"
        seen[key] += 1
        offsets[f"{key}#{seen[key]}"].append((ns - start) / 1000)
print(f"{len(puts)} puts; the client wrote to {'the leader' if entry == leader else 'a follower'}")
rows = sorted((statistics.median(v), k, len(v)) for k, v in offsets.items() if len(v) > len(puts) / 2)
for median, key, count in rows:
    print(f"{median:8.1f} us  {key:26s} (in {count} puts)")
