"""What the signals of the one decode decide: content filters, near-duplicates, decontamination."""
