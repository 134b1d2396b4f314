"""The latent space as a product: a report of what a model's latent space holds, with figures and probes."""
