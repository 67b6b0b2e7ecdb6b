"""Offline evaluation: MELD CSVs, scores, plots."""
