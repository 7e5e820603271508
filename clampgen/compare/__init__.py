"""Comparisons of clamp variants: running them (runner), statistics, reports."""
