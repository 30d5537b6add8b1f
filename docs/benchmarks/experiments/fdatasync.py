"""fdatasync latency after a small write, by how the file was made.

Run it on the disk a data dir lives on:
python3 fdatasync.py DIR [PROCESSES] [WRITE_BYTES]

- append: each write grows the file, as RocksDB's WAL does (its fallocate
  keeps the file's size), so every fdatasync also commits the new size to the
  filesystem's journal;
- prealloc: the file was preallocated to 64 MiB with its size set, as etcd's
  WAL segments are; its extents stay "unwritten" until written, and the
  fdatasync after a write that reaches a new block commits their conversion
  to the journal;
- zeroed: the file's 64 MiB were written as zeros first, so an fdatasync
  flushes the data alone.
"""

import os
import statistics
import sys
import time
import multiprocessing

WRITE_BYTES = int(sys.argv[3]) if len(sys.argv) > 3 else 400
WRITES = 1500
PAUSE_S = 0.0005


def one_file(path, mode, results):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    try:
        if mode == "prealloc":
            os.posix_fallocate(fd, 0, 64 << 20)
        elif mode == "zeroed":
            zeros = b"\0" * (1 << 20)
            for _ in range(64):
                os.write(fd, zeros)
        os.fsync(fd)
        payload = b"x" * WRITE_BYTES
        took = []
        for i in range(WRITES):
            os.pwrite(fd, payload, i * WRITE_BYTES)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - started)
            time.sleep(PAUSE_S)
    finally:
        os.close(fd)
        os.unlink(path)
    results.put(statistics.median(took) * 1e3)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for mode in ("append", "prealloc", "zeroed"):
        results = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=one_file, args=(os.path.join(directory, f"fdatasync-{i}.tmp"), mode, results))
            for i in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        medians = [results.get() for _ in workers]
        print(f"{mode:9} {processes} process(es): fdatasync p50 {statistics.mean(medians):.3f} ms")


if __name__ == "__main__":
    main()
