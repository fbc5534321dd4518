"""``mssoft cv``: planning, running and reporting a leave-one-patient-out sweep."""
