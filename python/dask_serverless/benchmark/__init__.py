"""Benchmarks: our engine against Dask's own schedulers, on the workloads of the issue.

Run it as ``python -m dask_serverless.bench`` (or ``make bench``, or ``dask-serverless bench``);
``--small`` shrinks every workload to a quick check, ``--list`` names the workloads.

What it measures
----------------
* **Wall seconds of one compute**, per workload and scheduler: ``dask.compute(obj,
  scheduler=...)`` timed with ``time.perf_counter()``, so graph optimization, our ingest, plan
  and upload, the run and fetching the result all count. Each workload's Dask object is built
  once, untimed. After one untimed warm-up run of each scheduler, runs alternate (run 1 on every
  scheduler, then run 2, ...), so that a slow moment of the machine does not land on one
  scheduler only. Tables show the median and our ratio to every other scheduler (ours /
  theirs: below 1 means we are faster).
* **The schedulers**: ``serverless`` (``dask_serverless.LocalCluster()`` with its default
  arguments, started once before the workloads; ``start()`` and a first one-task compute, which
  waits for the prewarmed workers, are timed apart), Dask's ``sync``, ``threads`` and
  ``processes``, and ``distributed`` (``distributed.LocalCluster(n_workers=2,
  threads_per_worker=1)`` with a ``Client`` that is not made the default, its start-up timed
  apart too). Every compute names its scheduler: Dask's global default is never switched.
* **Correctness**: every result is compared with the ``sync`` result (computed once, untimed,
  when ``sync`` is not among the timed schedulers): ``equal``; ``close`` (``numpy.allclose``
  with ``rtol=1e-9, atol=0``; the largest relative difference is shown); or ``MISMATCH``, which
  is printed loudly and makes the exit status 1 (the other workloads still run). A compute that
  raises is reported the same way.
* **What a run costs our engine**, from ``cluster.last_run`` after each compute: invocations,
  store operations and store bytes (written + read) per task, and the bytes of values that
  crossed a function boundary. A number the engine does not report is shown as ``-``.
* **The engine alone** (``zero-work``): the native ``zero_work`` plans a graph and runs the
  protocol without Python tasks, giving the engine's own microseconds per task, on the graph of
  ``trivial-100000`` and on a synthetic graph of about a million tasks (which also gives the
  planner's throughput); and the time from a Dask graph to a planned run (ingest and plan, as
  ``get`` does them) beside ``started_seconds`` of a real run.

At the end the targets of the issue are printed with the measured values and PASS or MISS.
Timings are reported, never asserted: only a wrong result or a failed compute fails the run.

Outputs: the console (machine, every run as it completes, a table per workload, the targets);
a CSV (``--csv``): one row per workload and scheduler; and, with ``--markdown``, a report for
docs/benchmarks.md (see :mod:`~dask_serverless.benchmark.report`).

The modules
-----------
Each depends only on those above it:

* :mod:`~dask_serverless.benchmark.workloads`: the catalogue (``Workload``, ``Built``, the
  builders, ``WORKLOADS``, ``workload(name)``) and the synthetic graph of the engine alone;
* :mod:`~dask_serverless.benchmark.checking`: a result against the reference (``compare``,
  ``Check``, ``worst``);
* :mod:`~dask_serverless.benchmark.formatting`: numbers as text, ``-`` when not measured;
* :mod:`~dask_serverless.benchmark.measuring`: one compute timed (``measure_run``, a
  ``RunResult`` with ``as_row()``), a workload's runs on every scheduler (``measure_workload``),
  the schedulers started once (``open_schedulers``), the results;
* :mod:`~dask_serverless.benchmark.engine`: the engine alone (``measure_engine``), the only
  module that uses private modules of dask-serverless;
* :mod:`~dask_serverless.benchmark.targets`: the targets, PASS or MISS;
* :mod:`~dask_serverless.benchmark.report`: tables, CSV, Markdown, the machine;
* :mod:`~dask_serverless.benchmark.cli`: options and ``main``.

Code that runs other experiments on the same workloads (memory sizes, concurrency limits)
takes the catalogue and ``measure_run`` and none of the command line::

    from dask_serverless import LocalCluster
    from dask_serverless.benchmark.measuring import measure_run
    from dask_serverless.benchmark.workloads import workload

    built = workload("demo").build(True)
    with LocalCluster(max_concurrency=4, memory_mb=2048) as cluster:
        row = measure_run(built.collection, cluster.get, cluster=cluster).as_row()
"""
