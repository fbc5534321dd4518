"""``mssoft demo``: soft against binary masks on generated data, with a report."""
