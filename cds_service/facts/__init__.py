"""Clinical facts: HER2, hormone receptors, metastatic setting, therapy lines, ILD risk, the draft orders in play,
each with its evidence; the guideline thresholds in one module with their sources."""
