"""Values that several stages must agree on, written once."""

VERSION = "0.1.0"
SEED = 98765  # the default seed of splits and of every model's initialisation and sampling
