"""Entry points: the `longview` command, the loop's step functions, Airflow tasks and assets, the local stack, the demo, the monitor, and the benchmarks (control/bench)."""
