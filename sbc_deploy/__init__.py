"""sbc-deploy: one-shot Spiking Brain Compression and deployment of SNNs to neuromorphic targets."""

__version__ = "0.1.0"
