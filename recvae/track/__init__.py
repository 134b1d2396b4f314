"""Experiment tracking with MLflow: every train, evaluate and benchmark run, without extra code."""

from recvae.track.tracking import NullTracker, Tracker, TrackingConfig, start_tracking

__all__ = ["NullTracker", "Tracker", "TrackingConfig", "start_tracking"]
