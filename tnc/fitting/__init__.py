"""Fitting: the front (tnc.fit), results, losses, progress, rescaling, ALS, GCP, coupled fits, decompositions."""
