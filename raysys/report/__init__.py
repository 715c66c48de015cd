"""Reading a run, with no Ray: its history (history.py), summary.md (summary.py), the full
`raysys report` (build.py) with its analyses (analysis.py), floors (floors.py) and figures
(plots.py)."""
