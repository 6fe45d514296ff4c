"""Claims of the study notes as experiments with a verdict: spec (the YAML files of claims/),
run (``attnlab claim run``), verdict (the statistical rule) and report (``attnlab report
--claim``)."""
