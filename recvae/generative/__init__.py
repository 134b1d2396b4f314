"""The generative model at work: how realistic a synthetic log is (``realism``), and fake profiles injected
into a log to measure how well anomaly scores find them (``attacks``)."""
