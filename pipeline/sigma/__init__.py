"""Sigma rules in and out: a pySigma backend and CloudTrail field pipeline (``backend``), the importer
(``importer``, ``convert``, ``correlation``, ``stubs``) and the exporter (``exporter``). See docs/sigma.md."""
