"""The reference model of the uAPI (`--backend model`), its mutants and the mutation run."""
