"""The population sweep: a FHIR Bulk Data export judged patient by patient with the facts and rules of the cards,
into a worklist (`her2-cds sweep EXPORT --out DIR`). Reading the export (export), finding the patients (cohort),
grouping their records (shuffle), judging them (judge), the worklist's files (worklist) and the stages on one
machine or a Dask cluster (run)."""
