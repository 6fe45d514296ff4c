"""Claims of the study notes as experiments with a verdict: spec (the YAML files of claims/),
run (``attnlab claim run``), verdict (the statistical rule), report (the Markdown and HTML of a
verdict) and cli (``attnlab claim list | run | report``; ``attnlab report --claim`` is the
same report)."""
