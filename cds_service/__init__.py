"""her2-cds: a CDS Hooks 2.0 service for HER2-low and HER2-ultralow metastatic breast cancer."""

__version__ = "0.1.0"
