"""Its presence puts tests/ on the import path (pytest's default prepend mode), so test files in every
sub-folder can import the shared helpers beside it (doc_blocks)."""
