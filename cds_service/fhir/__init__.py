"""Reading raw FHIR JSON: one status policy, dates and references, terminology (value sets as matchers),
pathology reports, and the extraction of the resources a fact needs."""
