"""Reports of an experiment: tables, training curves, a qualitative figure and an HTML page."""
