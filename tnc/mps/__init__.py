"""Chains: tensor trains and MPS, DMRG, MPOs, the MPS classifier, TT cross, Born machines."""
