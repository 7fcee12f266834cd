#!/usr/bin/python3
"""FAISS peer of hamming_topk / binary_search: IndexBinaryFlat (exact Hamming search) on random packed bits.
Usage: faiss_binary.py Q N BITS K [REPEAT] [THREADS]; prints one JSON line with the median and min milliseconds of search()."""
import json, sys, time
import numpy as np
import faiss

q, n, bits, k = (int(a) for a in sys.argv[1:5])
repeat = int(sys.argv[5]) if len(sys.argv) > 5 else 5
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 0
if threads: faiss.omp_set_num_threads(threads)
rng = np.random.default_rng(1)
db = rng.integers(0, 256, size=(n, bits // 8), dtype=np.uint8)
xq = rng.integers(0, 256, size=(q, bits // 8), dtype=np.uint8)
index = faiss.IndexBinaryFlat(bits)
index.add(db)
index.search(xq[: min(q, 16)], k)  # warm-up
times = []
for _ in range(repeat):
    t = time.perf_counter()
    index.search(xq, k)
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(json.dumps({"peer": "faiss.IndexBinaryFlat", "faiss": faiss.__version__, "threads": faiss.omp_get_max_threads(), "q": q, "n": n,
                  "bits": bits, "k": k, "median_ms": times[len(times) // 2], "min_ms": times[0]}))
