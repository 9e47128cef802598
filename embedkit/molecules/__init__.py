"""Molecules: SMILES → OGB-compatible graphs → GIN + information-bottleneck encoder."""
