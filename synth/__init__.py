"""QA synthesis and cross-verification (teacher / verifier backends)."""
