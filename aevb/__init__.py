"""aevb: autoencoders and Auto-Encoding Variational Bayes in JAX/Flax."""
