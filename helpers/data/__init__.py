"""Data generators (offline, from a seed) and loaders for real data sets in their real formats."""
