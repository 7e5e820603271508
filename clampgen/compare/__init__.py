"""The comparison side: A/B comparisons of clamp variants on identical runs, suites of them,
their statistics and reports.

    from clampgen.compare.runner import run_comparison
    summary = run_comparison(cfg, "results/cmp", "all", seeds=3)

Modules, bottom to top: stats (intervals, paired differences), summary (run directories read
back into numbers), tables, plots and html (what the numbers look like), report (writes them
all), dist (the processes of a torchrun job), runner (runs and resumes comparisons and suites).
`clampgen` re-exports the public names.
"""
