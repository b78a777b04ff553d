"""Reading the benchmarks and parallel corpora: where each file comes from (the registry and the offline mirror), readers that name the file and line of any problem, and verification."""
