"""Archives on disk: reading and validating inputs, the output schema, writing NetCDF outputs, their
provenance, and plots."""
