"""Jobs over files: inverting one archive, and one file of a reprocessing run."""
