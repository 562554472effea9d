"""Throughput through the queue against the raw model, in one run (issues 2 and 5).

    python benchmarks/bench_queue.py                 # 2,000 texts bulk + 2,000-call storm
    python benchmarks/bench_queue.py --bulk 10000 --mixed --json figures.json

Same as ``embedq bench``; run on demand, never in the test suite.
"""

from embedq.cli.main import main

if __name__ == "__main__":
    main(["bench", *__import__("sys").argv[1:]])
