"""Data gathering: prefetch first, then the FHIR fallback client (allow-list, deadline, byte budget, paging)."""
