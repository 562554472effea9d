"""Running and measuring the system: the embedded Redis, child processes, `embedq up`, the
benchmark and the evaluations. It sits above the producer and the worker (it starts and drives
both) and below the CLI; neither the worker nor the producer imports it."""
