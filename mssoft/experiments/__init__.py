"""Experiments built from the workflows: leave-one-patient-out cross-validation and the demo."""
